"""The spec document: top-level structure, params with `--set` overrides, `use:` imports, networks.

This module turns YAML text into a `Spec` whose networks carry checked networkx graphs (built by
`builder.graph.pipeline`). It knows the spec language's sections; it does not know any op.
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path


from builder.spec.dims_section import check_used, read_dims
from builder.core.limits import max_params
from builder.core.errors import Collector, Diagnostic, SpecError, UserError, did_you_mean
from builder.text.expr import DATA_SIZES, ExprError, substitute
from builder.graph.pipeline import build_network
from builder.graph.infer import ParamShapeCache
from builder.spec.train_section import TrainConfig, read_train
from builder.core.types import BlockDef, Network, records
from builder.text.readers import read_at_most
from builder.text.yaml_loader import MAX_FILE_BYTES, LocDict, LocList, load_scalar, load_yaml
from builder.text.yaml_loader import to_plain as _plain

SPEC_VERSION = 1
TOP_KEYS = ("spec", "name", "description", "params", "inputs", "blocks", "nodes", "outputs", "networks",
            "use", "train", "export", "labels", "dims", "sweep")
NETWORK_KEYS = ("inputs", "nodes", "outputs", "description")
OVERRIDABLE_SECTIONS = ("train", "export")  # `--set train.optimizer.lr=0.01`
MAX_SET_DEPTH = 16  # dots in a `--set` key: `train.a.a.a...` of 3000 levels would nest the section as deep
MAX_USE_FILES = 200  # distinct files one spec may `use:` (each is read once)
MAX_USE_BYTES = 10 * MAX_FILE_BYTES  # their total size
NAME_RULE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}$")  # one safe path component (runs/<name>)


def check_name(name: str) -> str | None:
    """Why `name` cannot name a spec (it becomes the folder runs/<name>, sweeps/<name>, <name>.svg), or None."""
    if not NAME_RULE.match(name) or name in (".", "..") or name.startswith(".."):
        return (f"name {name[:100]!r} must be one file name (letters, digits, _ . + -, at most 100 "
                "characters, not starting with '.' or '-'): it names the run folder runs/<name>")
    return None


@dataclass
class Spec:
    name: str
    path: Path | None
    params: dict
    networks: dict
    train: dict = field(default_factory=dict)  # the section as written (plain data, `--set` applied)
    export: dict = field(default_factory=dict)
    labels: list | None = None
    sweep: object = None  # builder.sweep.SweepConfig of a `sweep:` section, else None
    resolved: dict = field(default_factory=dict)  # the resolved document, plain data
    training: TrainConfig | None = None  # `train`, parsed and resolved (None without a train section)

    def network(self, name: str | None = None) -> Network:
        if name is None:
            if len(self.networks) != 1:
                raise UserError(f"spec '{self.name}' has several networks ({', '.join(self.networks)}): "
                                "name one with --network")
            return next(iter(self.networks.values()))
        if name not in self.networks:
            hint = did_you_mean(name, self.networks)
            raise UserError(f"spec '{self.name}' has no network '{name}'" + (f" ({hint})" if hint else ""))
        return self.networks[name]

    @property
    def graph(self):
        return self.network().graph

    @property
    def total_params(self) -> int:
        return sum(n.total_params for n in self.networks.values())

    @property
    def trainable_params(self) -> int:
        return sum(n.trainable_params for n in self.networks.values())

    def hash(self) -> str:
        """A stable hash of the resolved spec (recorded in exports and checkpoints)."""
        text = json.dumps(self.resolved, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_override(item: str):
    """`key=value` from `--set`: the value is read as a YAML scalar (numbers, booleans, lists)."""
    if "=" not in item:
        raise UserError(f"--set expects key=value, got '{item}'")
    key, raw = item.split("=", 1)
    return key.strip(), load_scalar(raw)


class SpecReader:
    """Reads one spec file (and the files it `use:`s) into a Spec; collects every error it can."""

    def __init__(self, text: str, file: str, path: Path | None, overrides: dict, safe: bool = False):
        self.text, self.file, self.path, self.overrides, self.safe = text, file, path, overrides, safe
        self.errors = Collector(file)
        self.used: dict = {}  # resolved path of a `use:`d file -> its blocks (each file is read once)
        self.used_bytes = 0

    def err(self, msg, loc=None, node=None, hint=None, file=None):
        line, col = loc or (None, None)
        self.errors.items.append(Diagnostic(msg, file or self.file, line, col, node, hint))

    # -- params ------------------------------------------------------------------------------------
    def resolve_params(self, doc: LocDict) -> dict:
        raw = doc.get("params") or LocDict()
        if not isinstance(raw, dict):
            self.err("params must be a mapping of name: value", doc.loc_of("params"))
            raw = LocDict()
        params: dict = {}
        failed: set = set()
        for key, value in raw.items():
            if not isinstance(key, str) or not key.isidentifier():
                self.err(f"param name '{key}' must be an identifier", raw.loc_of(key))
                continue
            if key in self.overrides:
                params[key] = self.overrides[key]
                continue
            try:
                params[key] = evaluate(value, params)
            except ExprError as e:
                if e.undefined not in failed:  # not a follow-on of an error already reported
                    self.err(str(e), raw.loc_of(key), node=f"params.{key}")
                failed.add(key)
        for key in self.overrides:
            if not isinstance(key, str):
                raise SpecError(Diagnostic(f"--set {key!r}: a param name must be a string", self.file))
            if key.count(".") >= MAX_SET_DEPTH or len(key) > 1000:
                raise SpecError(Diagnostic(f"--set {key[:60]}...: key nested deeper than {MAX_SET_DEPTH} levels",
                                           self.file))
            head = key.split(".")[0]
            if head == "data" and key.split(".", 1)[1] in DATA_SIZES:  # given by `build train` (data/sizes.py)
                params[key] = self.overrides[key]
                continue
            if "." not in key and key not in params:
                hint = did_you_mean(key, params)
                raise SpecError(Diagnostic(f"--set {key}: the spec has no param '{key}'", self.file, None, None,
                                           hint=hint or f"params are: {', '.join(params) or 'none'}"))
            if "." in key and head not in OVERRIDABLE_SECTIONS:
                hint = did_you_mean(head, OVERRIDABLE_SECTIONS)
                raise SpecError(Diagnostic(f"--set {key}: only params and keys of the "
                                           f"{' and '.join(OVERRIDABLE_SECTIONS)} sections can be set", self.file,
                                           hint=hint))
        return params

    def eval_section(self, doc, key, env) -> dict:
        """Resolve `${...}` in a plain section (train, export) and apply dotted `--set` overrides."""
        section = doc.get(key) or {}
        if not isinstance(section, dict):
            self.err(f"'{key}' must be a mapping", doc.loc_of(key))
            return {}
        try:
            section = _plain(evaluate(section, env))
        except ExprError as e:
            self.err(str(e), doc.loc_of(key), node=key)
            section = _plain(section)
        for dotted, value in self.overrides.items():
            parts = dotted.split(".")
            if parts[0] != key or len(parts) < 2:
                continue
            target = section
            for p in parts[1:-1]:
                if not isinstance(target.get(p), dict):
                    target[p] = {}
                target = target[p]
            target[parts[-1]] = value
        return section

    # -- use: --------------------------------------------------------------------------------------
    def load_blocks(self, doc: LocDict, file: str, path: Path | None, seen: tuple) -> dict:
        blocks: dict[str, BlockDef] = {}
        uses = doc.get("use") or []
        if isinstance(uses, str):
            uses = [uses]
        if not isinstance(uses, list):
            self.err("use must be a list of spec file paths", doc.loc_of("use"), file=file)
            uses = []
        for i, rel in enumerate(uses):
            loc = uses.loc_of(i) if isinstance(uses, LocList) else doc.loc_of("use")
            if not isinstance(rel, str):
                self.err(f"use entries must be file paths, got {rel!r}", loc, file=file)
                continue
            base = path.parent if path else Path.cwd()
            try:
                target = (base / rel).resolve()
                exists = target.is_file()
            except (OSError, ValueError) as e:  # a name too long, a NUL byte, a symlink loop
                self.err(f"use: cannot read '{rel[:200]}': {getattr(e, 'strerror', None) or e}", loc, file=file)
                continue
            if self.safe:  # a spec given as text lives in the working directory: that is its folder
                root = (self.path.parent if self.path is not None else Path.cwd()).resolve()
                if root not in target.parents and target != root:
                    where = "the spec's folder" if self.path is not None else "the working directory"
                    self.err(f"use: '{rel}' is outside {where} (--safe)", loc, file=file)
                    continue
            if target in seen:
                chain = " -> ".join(p.name for p in seen + (target,))
                self.err(f"use: import cycle {chain}", loc, file=file)
                continue
            if not exists:
                self.err(f"use: no such file '{rel}' (looked in {base})", loc, file=file)
                continue
            if target in self.used:  # a diamond (or a fan-out): read once
                self._merge(blocks, self.used[target], loc, file)
                continue
            if len(self.used) >= MAX_USE_FILES:
                self.err(f"use: more than {MAX_USE_FILES} files in all", loc, file=file)
                continue
            sub_file = _display(target)
            try:
                sub_text = read_spec_text(target)
            except (OSError, UnicodeDecodeError, _TooLarge) as e:
                why = ("not a UTF-8 text file" if isinstance(e, UnicodeDecodeError) else str(e)
                       if isinstance(e, _TooLarge) else e.strerror or str(e))
                self.err(f"use: cannot read '{rel}': {why}", loc, file=file)
                continue
            self.used_bytes += len(sub_text)
            if self.used_bytes > MAX_USE_BYTES:
                self.err(f"use: the used files hold more than {MAX_USE_BYTES // 1_000_000} MB in all", loc, file=file)
                self.used[target] = {}
                continue
            self.used[target] = {}
            sub = load_yaml(sub_text, sub_file)
            if not isinstance(sub, dict):
                self.err(f"use: '{rel}' is not a spec mapping", loc, file=file)
                continue
            self.used[target] = self.load_blocks(sub, sub_file, target, seen + (target,))
            self._merge(blocks, self.used[target], loc, file)
        own = doc.get("blocks") or LocDict()
        if not isinstance(own, dict):
            self.err("blocks must be a mapping of name: block", doc.loc_of("blocks"), file=file)
            own = LocDict()
        for name, body in own.items():
            if name in blocks:
                self.err(f"block '{name}' clashes with a block imported from {blocks[name].file}",
                         own.loc_of(name), file=file)
                continue
            if not isinstance(body, dict):
                self.err(f"block '{name}' must be a mapping with nodes", own.loc_of(name), file=file)
                continue
            blocks[name] = BlockDef(name, body, file, own.loc_of(name))
        return blocks

    def _merge(self, blocks: dict, new: dict, loc, file) -> None:
        for name, block in new.items():
            if name in blocks and blocks[name] is not block:
                self.err(f"use: block '{name}' is defined in both {blocks[name].file} and {block.file}",
                         loc, file=file)
            blocks[name] = block

    # -- the whole document -------------------------------------------------------------------------
    def read(self) -> Spec:
        doc = load_yaml(self.text, self.file)
        if not isinstance(doc, dict):
            where = getattr(doc, "loc", None) or (1, 1)
            raise SpecError(Diagnostic("a spec must be a YAML mapping (spec: 1, name, inputs, nodes, ...)",
                                       self.file, *where))
        for key in doc:
            if key not in TOP_KEYS:
                self.err(f"unknown top-level key '{key}'", doc.loc_of(key), hint=did_you_mean(key, TOP_KEYS))
        version = doc.get("spec", SPEC_VERSION)
        if version != SPEC_VERSION:
            self.err(f"unsupported spec format version {version!r} (this builder reads version {SPEC_VERSION})",
                     doc.loc_of("spec"))
        name = doc.get("name") or (self.path.stem if self.path else "spec")
        if not isinstance(name, str):
            self.err("name must be a string", doc.loc_of("name"))
            name = str(name)
        elif "name" in doc and check_name(name):
            self.err(check_name(name), doc.loc_of("name"))
            name = "spec"
        elif "name" not in doc and check_name(name):
            name = "spec"  # a file stem that is no safe folder name
        params = self.resolve_params(doc)
        dims = read_dims(self, doc, params, evaluate)
        blocks = self.load_blocks(doc, self.file, self.path, (self.path.resolve(),) if self.path else ())
        self.errors.raise_if_any()

        if "networks" in doc:
            for key in ("inputs", "nodes", "outputs"):
                if key in doc:
                    self.err(f"'{key}' cannot stand beside 'networks': put it inside one network",
                             doc.loc_of(key))
            nets = doc["networks"]
            if not isinstance(nets, dict) or not nets:
                self.err("networks must be a mapping of name: {inputs, nodes, outputs}", doc.loc_of("networks"))
                nets = LocDict()
            bodies = {}
            for net_name, body in nets.items():
                if not isinstance(body, dict):
                    self.err(f"network '{net_name}' must be a mapping with inputs, nodes, outputs",
                             nets.loc_of(net_name))
                    continue
                for key in body:
                    if key not in NETWORK_KEYS:
                        self.err(f"unknown key '{key}' in network '{net_name}'", body.loc_of(key),
                                 hint=did_you_mean(key, NETWORK_KEYS))
                bodies[net_name] = (body, nets.loc_of(net_name))
        else:
            bodies = {"model": (doc, doc.loc)}
        self.errors.raise_if_any()

        networks = {}
        cache = ParamShapeCache()
        for net_name, (body, loc) in bodies.items():
            networks[net_name] = build_network(body, loc, file=self.file, spec_name=name, net_name=net_name,
                                               params=params, blocks=blocks, diagnostics=self.errors.items,
                                               evaluate=evaluate, cache=cache, dims=dims)
        self.errors.raise_if_any()
        total = sum(net.total_params for net in networks.values())
        if total > max_params():  # the per-node limit of shape inference does not stop many large nodes
            self.err(f"the spec has {total:,} parameters in all, over the limit of {max_params():,} "
                     f"({total * 4 / 1e9:.1f} GB of float32 weights)", doc.loc or (1, 1),
                     hint="raise the limit with --max-params N if you mean it")
        self.errors.raise_if_any()
        check_used(self, doc, dims, {d for net in networks.values() for t in net.inputs for d in t.shape
                                     if isinstance(d, str)})
        self.errors.raise_if_any()

        train = self.eval_section(doc, "train", params)
        training = read_train(doc.get("train"), train, self.file, self.overrides, networks, self.errors.items)
        export = self.eval_section(doc, "export", params)
        labels = doc.get("labels")
        sweep = _read_sweep(doc, self.err, params, train, training, networks)
        self.errors.raise_if_any()
        resolved = {"spec": SPEC_VERSION, "name": name, "params": params, "train": train, "export": export,
                    **({"dims": {k: vars(v) for k, v in dims.items()}} if dims else {}),
                    "networks": {n: _describe(net) for n, net in networks.items()}}
        return Spec(name=name, path=self.path, params=params, networks=networks, train=train, export=export,
                    labels=_plain(labels) if labels else None, sweep=sweep, resolved=_plain(resolved),
                    training=training)


def evaluate(value, env):
    """`${...}` resolved in a value of the document (strings, lists, mappings), source positions kept."""
    if isinstance(value, str):
        return substitute(value, env)
    if isinstance(value, list):
        out = LocList(evaluate(v, env) for v in value)
        out.loc, out.locs = getattr(value, "loc", None), getattr(value, "locs", [])
        return out
    if isinstance(value, dict):
        out = LocDict((k, evaluate(v, env)) for k, v in value.items())
        out.loc, out.locs = getattr(value, "loc", None), getattr(value, "locs", {})
        return out
    return value


def _read_sweep(doc, err, params, train, training, networks):
    """The hook of the `sweep:` section (checked by builder.sweep.space, which imports no Optuna)."""
    if "sweep" not in doc:
        return None
    from builder.sweep.space import read_sweep
    return read_sweep(doc, err, params, train, training, networks)


def _describe(net: Network) -> dict:
    return {"inputs": [[i.name, list(i.shape), i.dtype] for i in net.inputs],
            "outputs": [[o.name, o.node, o.port] for o in net.outputs],
            "nodes": [[r.path, r.op, _plain(r.args), [list(x) for x in r.sources]] for r in records(net.graph)]}


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while building: graphs of thousands of nodes allocate many small
    objects, and the collector's full passes made build time grow faster than the node count."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load(path_or_text, overrides: dict | None = None, safe: bool = False, **params) -> Spec:
    """Load and check a spec file. Keyword params override the spec's `params` (like `--set k=v`)."""
    with gc_paused():
        return _load(path_or_text, overrides or {}, safe, params)


class _TooLarge(Exception):
    pass


def read_spec_text(path: Path) -> str:
    """The text of a spec file, reading at most MAX_FILE_BYTES + 1 bytes: a huge file is refused in
    bounded time and memory, before it is decoded."""
    data = read_at_most(path, MAX_FILE_BYTES)
    if len(data) > MAX_FILE_BYTES:
        raise _TooLarge(f"file is larger than {MAX_FILE_BYTES // 1000} kB")
    return data.decode("utf-8")


def _load(path_or_text, overrides, safe, params) -> Spec:
    overrides = {**(overrides or {}), **params}
    if isinstance(path_or_text, Path) or (isinstance(path_or_text, str) and "\n" not in path_or_text
                                          and path_or_text.strip().endswith((".yaml", ".yml"))):
        path = Path(path_or_text)
        if not path.is_file():
            raise UserError(f"{path}: no such spec file")
        try:
            text = read_spec_text(path)
        except UnicodeDecodeError:
            raise UserError(f"{path}: not a UTF-8 text file") from None
        except OSError as e:
            raise UserError(f"{path}: cannot read the spec: {e.strerror or e}") from None
        except _TooLarge as e:
            raise SpecError(Diagnostic(str(e), _display(path), 1, 1)) from None
        return SpecReader(text, _display(path), path, overrides, safe).read()
    return SpecReader(str(path_or_text), "<spec>", None, overrides, safe).read()
