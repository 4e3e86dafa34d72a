"""Expansion: a network body (scopes, blocks, repeats) -> one NodeDraft per op node, references still lazy.

Walks the spec's scopes and records every op node under its spec path, with its `in:` kept as lazy
references (so `in:` may name a later node, a block output or a block input); `builder.graph.wiring` resolves
them into edges. Also checks the network's `inputs:` and reads its `outputs:`.
"""
from __future__ import annotations

import keyword

import torch

from builder import ops as ops_pkg
from builder.graph.argtypes import first_line
from builder.graph.blocks import add_block
from builder.core.errors import Diagnostic, did_you_mean
from builder.graph.deferred import SizeContext
from builder.text.expr import Deferred, ExprError, NeedsShape
from builder.graph.scopes import NameRef, NodeRef, Scope
from builder.core.types import DTYPES, INPUT_KEYS, MAX_DIM, MAX_NODES, NODE_KEYS, NodeDraft, TensorSpec
from builder.text.yaml_loader import LocDict, LocList
from builder.text.yaml_loader import to_plain as _plain

# Node names become submodule attributes and names in the generated forward: never a keyword or an
# attribute every torch module already has (`type`, `training`, `forward`, ...).
RESERVED_NAMES = frozenset(dir(torch.fx.GraphModule(torch.nn.Module(), torch.fx.Graph()))) | {"self", "build_info"}


class _TooBig(Exception):
    """Raised mid-expansion once the node limit is passed, so nested repeats cannot run away."""


class Expander:
    """Expands one network body. Errors go to `diagnostics` (the spec's shared list); `evaluate(value, env)`
    resolves `${...}`; `file` is the spec being read (for the notes that point at a block's use)."""

    def __init__(self, file, params, blocks, diagnostics: list, evaluate):
        self.file, self.params, self.blocks = file, params, blocks
        self.diagnostics, self.evaluate = diagnostics, evaluate
        self.drafts: dict[str, NodeDraft] = {}   # op nodes, by spec path, in spec order
        self.targets: dict[str, list] = {}       # spec path -> its lazy `in:` references
        self.skipped: dict[str, tuple] = {}      # spec path of a `when: false` node -> (its `in:` refs, loc, file)
        self.input_drafts: list[NodeDraft] = []  # the network's inputs
        self.block_meta: dict[str, dict] = {}
        self.sites: dict[str, tuple] = {}  # block instance path -> (file, loc) where the spec uses it
        self.expanding = (None, None)
        self.inputs_broken = False
        self.block_shares: list = []  # (instance path, OTHER, loc, file): `share:` on block instances

    def err(self, msg, loc=None, node=None, hint=None, file=None):
        line, col = loc or (None, None)
        self.diagnostics.append(Diagnostic(msg, file or self.file, line, col, node, hint))

    def ev(self, value, env, loc, node, file, scope=None):
        """`value` with its `${...}` evaluated; with a `scope`, one that reads sizes (dim) is deferred."""
        try:
            return self.evaluate(value, env)
        except NeedsShape as e:
            if scope is not None:
                return Deferred(value, env, SizeContext(scope, self.drafts, self.evaluate))
            self.err(f"{e}; sizes can be read in op arguments, block params and an op node's `when`, not here",
                     loc, node=node, file=file)
            return None
        except ExprError as e:
            self.err(str(e), loc, node=node, file=file)
            return None

    def expand(self, body: LocDict, loc):
        """Inputs, nodes and outputs of one network -> (input TensorSpecs, [(output name, lazy ref)]), or None
        when the body cannot be expanded (the errors are in `diagnostics`)."""
        file = self.file
        top = Scope("", file, dict(self.params))
        tensor_specs = self.read_inputs(body, loc, top)
        nodes = body.get("nodes")
        if not isinstance(nodes, dict) or not nodes:
            self.err("a network needs `nodes:` (an ordered mapping of name: {op: ...})",
                     body.loc_of("nodes") if "nodes" in body else loc)
            return None
        first = NameRef(top, tensor_specs[0].name, None, loc, file) if tensor_specs else None
        try:
            self.expand_scope(nodes, top, first, ())
        except _TooBig:
            name, where = self.expanding
            self.err(f"the network expands to more than {MAX_NODES} nodes (check repeat counts)", where,
                     node=name, file=file)
            return None
        out_targets = self.read_outputs(body, nodes, top)
        if len(self.drafts) > MAX_NODES:
            self.err(f"the network expands to {len(self.drafts)} nodes (limit {MAX_NODES})", loc)
            return None
        return tensor_specs, out_targets

    def read_inputs(self, body, loc, top) -> list:
        file = self.file
        inputs_raw = body.get("inputs")
        tensor_specs = []
        errors_before = len(self.diagnostics)
        if not isinstance(inputs_raw, dict) or not inputs_raw:
            self.err("a network needs `inputs:` (e.g. x: {shape: [B, 3, 32, 32]})",
                     body.loc_of("inputs") if "inputs" in body else loc)
            inputs_raw = LocDict()
        for name, spec in inputs_raw.items():
            iloc = inputs_raw.loc_of(name)
            top.declared.add(name)  # a reference to a broken input is not a second error
            if not isinstance(name, str) or not name.isidentifier():
                self.err(f"input name '{name}' must be an identifier", iloc)
                continue
            if keyword.iskeyword(name) or name in RESERVED_NAMES:
                why = "a Python keyword" if keyword.iskeyword(name) else "reserved"
                self.err(f"input name '{name}' is {why}: it becomes an argument of the generated forward", iloc)
                continue
            if not isinstance(spec, dict) or "shape" not in spec:
                self.err(f"input '{name}' needs a shape, e.g. {{shape: [B, 3, 32, 32]}}", iloc, node=name)
                continue
            for k in spec:
                if k not in INPUT_KEYS:
                    self.err(f"unknown key '{k}' in input '{name}'", spec.loc_of(k), node=name,
                             hint=did_you_mean(k, INPUT_KEYS))
            shape = self.ev(spec["shape"], self.params, spec.loc_of("shape"), name, file)
            if isinstance(shape, list) and "auto" in shape:  # the width the training data gives
                if "data.num_features" not in self.params:
                    self.err(f"input '{name}': `auto` comes from the training data: `build train` and `build check` "
                             "read it from train.data (without train.data: --set data.num_features=N)",
                             spec.loc_of("shape"), node=name)
                    continue
                shape = [self.params["data.num_features"] if d == "auto" else d for d in shape]
            if not isinstance(shape, list) or not shape:
                self.err(f"input '{name}' shape must be a non-empty list of sizes and dim names", spec.loc_of("shape"),
                         node=name)
                continue
            bad = [d for d in shape if not ((isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_DIM)
                                            or (isinstance(d, str) and d.isidentifier()))]
            if bad:
                self.err(f"input '{name}' shape entries must be positive sizes (<= 2**31) or dim names, got {bad[0]!r}",
                         spec.loc_of("shape"), node=name)
                continue
            dtype = spec.get("dtype", "float32")
            if dtype not in DTYPES:
                self.err(f"input '{name}': unknown dtype '{dtype}'", spec.loc_of("dtype"), node=name,
                         hint=did_you_mean(dtype, DTYPES) or f"one of {', '.join(DTYPES)}")
                continue
            vrange = spec.get("range")
            if vrange is not None:
                vrange = self.ev(vrange, self.params, spec.loc_of("range"), name, file)
                if not (isinstance(vrange, list) and len(vrange) == 2 and all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) for v in vrange)
                        and vrange[0] < vrange[1]):
                    self.err(f"input '{name}' range must be [low, high) with low < high, got {_plain(vrange)!r}",
                             spec.loc_of("range"), node=name)
                    continue
                vrange = tuple(vrange)
            tensor_specs.append(TensorSpec(name, tuple(shape), dtype, vrange))
            self.input_drafts.append(NodeDraft(name, "input", file=file, loc=iloc, shape=tuple(shape), dtype=dtype))
            top.table[name] = ("input", NodeRef(name, "out"))
        self.inputs_broken = len(self.diagnostics) > errors_before
        return tensor_specs

    def read_outputs(self, body, nodes, top) -> list:
        file = self.file
        outputs_raw = body.get("outputs")
        default_output = None
        if outputs_raw is None:
            last = list(nodes)[-1]
            default_output = node_name(last)
            outputs_raw = LocList([default_output])
            outputs_raw.loc, outputs_raw.locs = nodes.loc_of(last), [nodes.loc_of(last)]
        pairs = []
        if isinstance(outputs_raw, str):
            outputs_raw = LocList([outputs_raw])
            outputs_raw.loc = body.loc_of("outputs")
        if isinstance(outputs_raw, dict):
            pairs = [(k, v, outputs_raw.loc_of(k)) for k, v in outputs_raw.items()]
        elif isinstance(outputs_raw, list):
            pairs = [(v, v, outputs_raw.loc_of(i)) for i, v in enumerate(outputs_raw)]
        else:
            self.err("outputs must be a list of node names", body.loc_of("outputs"))
        out_targets = []
        for name, ref, oloc in pairs:
            ref = node_name(ref)
            if not isinstance(ref, str):
                self.err(f"output must name a node, got {ref!r}", oloc)
                continue
            target = (NameRef(top, ref, None, oloc, file) if ref == default_output else
                      self.parse_ref(ref, top, oloc, file))  # the last node by its name, never as `node.port`
            out_targets.append((str(name), target))
        return out_targets

    def parse_ref(self, ref: str, scope: Scope, loc, file) -> NameRef:
        name, _, port = ref.partition(".")
        return NameRef(scope, name, port or None, loc, file)

    def parse_in(self, raw, scope, loc, file, node):
        """`in:` -> (targets, slot names or None)."""
        if isinstance(raw, (str, int)) and not isinstance(raw, bool):
            return [self.parse_ref(str(raw), scope, loc, file)], None
        if isinstance(raw, list):
            out = []
            for i, r in enumerate(raw):
                r = node_name(r)
                if not isinstance(r, str):
                    self.err(f"`in` entries must be node names, got {r!r}", loc, node=node, file=file)
                    continue
                out.append(self.parse_ref(r, scope, raw.loc_of(i) if isinstance(raw, LocList) else loc, file))
            return out, None
        if isinstance(raw, dict):
            targets, slots = [], []
            for k, r in raw.items():
                r = node_name(r)
                if not isinstance(r, str):
                    self.err(f"`in.{k}` must name a node, got {r!r}", loc, node=node, file=file)
                    continue
                slots.append(str(k))
                targets.append(self.parse_ref(r, scope, raw.loc_of(k) if isinstance(raw, LocDict) else loc, file))
            return targets, slots
        self.err(f"`in` must be a node name, a list or a mapping, got {raw!r}", loc, node=node, file=file)
        return [], None

    def expand_scope(self, nodes: LocDict, scope: Scope, first_input, stack: tuple, block_type=None):
        prev = first_input
        for local, entry in nodes.items():
            loc = nodes.loc_of(local)
            local = node_name(local)  # `0:` in YAML is the int 0; torchvision-style names are digits
            file = scope.file
            scope.declared.add(local)
            if not scope.prefix:
                self.expanding = (local, loc)  # the top-level node to blame if the expansion runs away
            path = scope.prefix + str(local)
            if not isinstance(local, str) or not local.replace("_", "a").replace("-", "a").isalnum():
                self.err(f"node name '{local}' must be a word of letters, digits, _ or - (no dots, no spaces)", loc,
                         file=file)
                continue
            if keyword.iskeyword(local) or local in RESERVED_NAMES:
                why = ("a Python keyword" if keyword.iskeyword(local) else
                       "reserved (the generated forward's name for the module)" if local == "self" else
                       f"reserved (every torch module has an attribute '{local}')")
                self.err(f"node name '{local}' is {why}: pick another name", loc, node=path, file=file)
                continue
            if local in scope.table:
                self.err(f"node name '{local}' is already used in this scope (by an input or a node)", loc,
                         node=path, file=file)
                continue
            if not isinstance(entry, dict):
                self.err(f"node '{local}' must be a mapping with `op:` or `block:`", loc, node=path, file=file)
                continue
            if "in" in entry:
                targets, slots = self.parse_in(entry["in"], scope, entry.loc_of("in"), file, path)
            elif takes_no_input(entry):  # `param`: a learned tensor, not fed by the previous node
                targets, slots = [], None
            elif prev is not None:
                targets, slots = [prev], None
            else:
                if not self.inputs_broken:  # a broken `inputs:` section was reported already
                    self.err("the first node has no input: give it `in:` or declare `inputs:`", loc, node=path,
                             file=file)
                targets, slots = [], None
            cond = None
            if "when" in entry:
                # an op node's `when` may read sizes (dim): decided by inference (builder.graph.deferred)
                cond = self.ev(entry["when"], scope.env, entry.loc_of("when"), path, file,
                               scope=scope if "op" in entry and "block" not in entry else None)
                if isinstance(cond, Deferred):
                    pass
                elif not isinstance(cond, bool):
                    if cond is not None:
                        self.err(f"`when` must be true or false, got {cond!r}", entry.loc_of("when"), node=path,
                                 file=file)
                    continue
                if not cond:  # a skipped node passes its (first) input through
                    scope.table[local] = ("skip", targets[0] if targets else None, loc, path)
                    self.skipped[path] = (targets, loc, file)  # its `in:` is still checked, and blamed on it
                    prev = NameRef(scope, local, None, loc, file)
                    continue
            has_op, has_block = "op" in entry, "block" in entry
            if has_op == has_block:
                self.err(f"node '{local}' needs exactly one of `op:` or `block:`", loc, node=path, file=file)
                continue
            if has_op:
                self.add_op(entry, scope, local, path, targets, slots, loc, file, block_type,
                            when=cond if isinstance(cond, Deferred) else None)
            else:
                self.add_block(entry, scope, local, path, targets, slots, loc, file, stack)
            prev = NameRef(scope, local, None, loc, file)

    def add_op(self, entry, scope, local, path, targets, slots, loc, file, block_type, when=None):
        op_name = entry["op"]
        op = ops_pkg.get(op_name) if isinstance(op_name, str) else None
        if op is None:
            self.err(f"unknown op '{op_name}'", entry.loc_of("op"), node=path, file=file,
                     hint=did_you_mean(op_name, ops_pkg.names()))
            scope.table[local] = ("node", path, ("out",))
            return
        args = LocDict()
        arg_locs = {}
        for k, v in entry.items():
            if k in NODE_KEYS:
                continue
            val = self.ev(v, scope.env, entry.loc_of(k), path, file, scope=scope)
            args[k] = val if isinstance(val, Deferred) else _plain(val)
            arg_locs[k] = entry.loc_of(k)
        share = self.ev(entry.get("share"), scope.env, entry.loc_of("share"), path, file)
        tie = self.ev(entry.get("tie"), scope.env, entry.loc_of("tie"), path, file)
        if share is not None and not isinstance(share, str):
            self.err("`share` must name another node's spec path", entry.loc_of("share"), node=path, file=file)
            share = None
        if tie is not None and not (isinstance(tie, dict) and all(isinstance(v, str) for v in tie.values())):
            self.err("`tie` must map a parameter name to 'node.path.param'", entry.loc_of("tie"), node=path, file=file)
            tie = None
        trainable = entry.get("trainable", True)
        if not isinstance(trainable, bool):
            self.err(f"`trainable` must be true or false, got {trainable!r}", entry.loc_of("trainable"), node=path,
                     file=file)
            trainable = True
        block = scope.prefix[:-1]
        init = _plain(self.ev(entry.get("init"), scope.env, entry.loc_of("init"), path, file))
        if init is not None:
            problem = init_problem(init)
            if problem:
                self.err(f"init: {problem}", entry.loc_of("init"), node=path, file=file)
        for k in ("share", "tie", "init", "when"):  # so share/tie errors point at the key the user wrote
            if k in entry:
                arg_locs[k] = entry.loc_of(k)
        self.drafts[path] = NodeDraft(path, op.name, dict(args), (), tuple(slots) if slots is not None else None,
                                      file, loc, arg_locs, block, block_type, share, _plain(tie) if tie else None,
                                      init, trainable, when)
        self.targets[path] = targets
        scope.table[local] = ("node", path, None)
        if len(self.drafts) > MAX_NODES:
            raise _TooBig()

    def add_block(self, entry, scope, local, path, targets, slots, loc, file, stack):
        add_block(self, entry, scope, local, path, targets, slots, loc, file, stack)


def node_name(value):
    """A node name as written: YAML reads `0:` or `in: 6` as ints, which name nodes `0` and `6`."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def takes_no_input(entry) -> bool:
    """An op that can run without inputs (`param`, `arange`) is not fed the previous node by default: it reads
    only what its `in:` names."""
    op = ops_pkg.get(entry.get("op")) if isinstance(entry.get("op"), str) else None
    return op is not None and op.arity[0] == 0


def init_problem(init) -> str | None:
    """What is wrong with a node's `init:` (an initialiser name, {type: ..., options} or a list of them)."""
    from builder.core.errors import UserError
    from builder.ops.initializers import _init_fn, _rules
    if not isinstance(init, (str, dict, list)) or isinstance(init, list) and not all(
            isinstance(r, (str, dict)) for r in init):
        return f"expected an initialiser name or {{type: name, ...}}, got {init!r}"
    try:
        for rule in _rules(init):
            if "params" in rule:
                return "a node's init applies to its own parameters: drop `params`"
            _init_fn(rule)
    except UserError as e:
        return str(e).removeprefix("train.init: ")
    except Exception as e:  # options of the wrong kind (std: abc)
        return f"invalid initialiser options: {first_line(e)}"
    return None

