"""Expand a network body (blocks, repeats, references) into one networkx graph and infer its shapes.

Pass 1 walks the spec's scopes and records every op node under its spec path, with its inputs kept as
lazy references (so `in:` may name a later node, a block output or a block input). Pass 2 resolves the
references into edges, rejects cycles, and runs each op's shape rule in topological order, checking
arguments, dtypes and sizes and counting parameters and MACs on the meta device (no weight allocated).
"""
from __future__ import annotations

import functools
import keyword
import types
import typing
from dataclasses import dataclass, field

import networkx as nx
import torch

from . import ops as ops_pkg
from . import shapes as S
from .errors import did_you_mean
from .block_share import apply_block_shares
from .deferred import decide_when, resolve_args
from .expr import Deferred, ExprError, NeedsShape, substitute
from .meta import meta_device
from .ops.registry import InferContext
from .ops.registry import public_args as _public
from .shapes import ShapeError
from .yaml_loader import LocDict, LocList
from .yaml_loader import to_plain as _plain

NODE_KEYS = ("op", "block", "in", "repeat", "share", "tie", "init", "trainable", "when", "doc")
BLOCK_KEYS = ("params", "inputs", "nodes", "outputs", "description")
INPUT_KEYS = ("shape", "dtype", "range", "doc")
# Node names become submodule attributes and names in the generated forward: never a keyword or an
# attribute every torch module already has (`type`, `training`, `forward`, ...).
RESERVED_NAMES = (frozenset(dir(torch.fx.GraphModule(torch.nn.Module(), torch.fx.Graph())))
                  | {"self", "spec_inputs", "spec_outputs", "spec_name", "network_name", "node_inits"})
MAX_NODES = 20_000  # about 10x the graph of GPT-2 XL; checking this many nodes takes seconds
MAX_REPEAT = 10_000
MAX_BLOCK_DEPTH = 32
MAX_PARAMS = 10**11
MAX_ELEMENTS = 2**34  # per example; 17 G elements = 68 GB of float32


@dataclass
class NameRef:
    scope: "Scope"
    name: str
    port: str | None
    loc: tuple | None
    file: str


@dataclass
class NodeRef:
    node: str
    port: str


@dataclass
class ExportRef:
    export: "BlockExport"
    port: str | None
    loc: tuple | None
    file: str


@dataclass
class BlockExport:
    path: str
    outputs: list  # [(port name, target)]


@dataclass
class Scope:
    prefix: str
    file: str
    env: dict
    table: dict = field(default_factory=dict)   # local name -> (kind, ...)
    declared: set = field(default_factory=set)  # every name written in this scope, even a failed one


@dataclass
class Record:
    path: str
    op: str
    args: dict
    arg_locs: dict
    inputs: list
    slots: list | None
    loc: tuple | None
    file: str
    block: str
    block_type: str | None
    share: str | None = None
    tie: dict | None = None
    init: object = None
    trainable: bool = True
    when: object = None  # a `when:` that reads sizes, decided in shape inference (expr.Deferred)


class _TooBig(Exception):
    """Raised mid-expansion once the node limit is passed, so nested repeats cannot run away."""


class RefError(Exception):
    def __init__(self, message, loc, file, hint=None, undeclared=False):
        super().__init__(message)
        self.loc, self.file, self.hint = loc, file, hint
        self.undeclared = undeclared  # names something never written in its scope (not a follow-on error)


class GraphBuilder:
    def __init__(self, reader, spec_name, net_name, params, blocks):
        self.reader, self.spec_name, self.net_name = reader, spec_name, net_name
        self.params, self.blocks = params, blocks
        self.records: dict[str, Record] = {}
        self.block_meta: dict[str, dict] = {}
        self.g = nx.MultiDiGraph()
        self.expanding = (None, None)
        self.inputs_broken = False
        self.sites: dict[str, tuple] = {}  # block instance path -> (file, loc) where the spec uses it
        self.block_shares: list = []  # (instance path, OTHER, loc, file) of `share:` on block instances

    def err(self, msg, loc=None, node=None, hint=None, file=None):
        self.reader.err(msg, loc, node=node, hint=hint, file=file)

    def ev(self, value, env, loc, node, file, scope=None):
        """`value` with its `${...}` evaluated; with a `scope`, one that reads sizes (dim) is deferred."""
        try:
            return self.reader.eval_value(value, env)
        except NeedsShape as e:
            if scope is not None:
                return Deferred(value, env, scope)
            self.err(f"{e}; sizes can be read in op arguments, block params and an op node's `when`, not here", loc, node=node,
                     file=file)
            return None
        except ExprError as e:
            self.err(str(e), loc, node=node, file=file)
            return None

    # ---- pass 1: scopes ------------------------------------------------------------------------
    def build(self, body: LocDict, loc):
        from .spec import DTYPES, MAX_DIM, Network, OutputRef, TensorSpec

        file = self.reader.file
        top = Scope("", file, dict(self.params))
        inputs_raw = body.get("inputs")
        tensor_specs = []
        errors_before = len(self.reader.errors.items)
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
            self.g.add_node(name, op="input", args={}, inputs=[], in_shapes=[], out_shapes={"out": tuple(shape)},
                            out_shape=tuple(shape), dtype=dtype, ports=["out"], params=0, trainable_params=0,
                            macs=0, block="", block_type=None, source=f"{file}:{iloc[0]}:{iloc[1]}",
                            line=iloc[0], col=iloc[1], param_shapes={}, share=None, tie=None, init=None,
                            trainable=True, input_names=None)
            top.table[name] = ("input", NodeRef(name, "out"))

        self.inputs_broken = len(self.reader.errors.items) > errors_before
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

        outputs_raw = body.get("outputs")
        default_output = None
        if outputs_raw is None:
            last = list(nodes)[-1]
            default_output = _name(last)
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
            ref = _name(ref)
            if not isinstance(ref, str):
                self.err(f"output must name a node, got {ref!r}", oloc)
                continue
            target = (NameRef(top, ref, None, oloc, file) if ref == default_output else
                      self.parse_ref(ref, top, oloc, file))  # the last node by its name, never as `node.port`
            out_targets.append((str(name), target))

        if len(self.records) > MAX_NODES:
            self.err(f"the network expands to {len(self.records)} nodes (limit {MAX_NODES})", loc)
            return None
        apply_block_shares(self, self.block_shares)
        if self.reader.errors.items:
            self.report_dangling(out_targets)
            return None
        self.resolve_edges()
        if self.reader.errors.items:
            return None
        self.infer_all()
        outputs = []
        for name, target in out_targets:
            try:
                node, port = self.resolve(target)
            except RefError as e:
                self.err(f"outputs: {e}", e.loc, hint=e.hint, file=e.file)
                continue
            known = self.g.nodes[node].get("out_shapes")
            if known is not None and port not in known:
                self.err(f"output '{name}': '{node}' has no output port '{port}'", target.loc, file=target.file,
                         hint=f"its ports are: {', '.join(known)}")
                continue
            outputs.append(OutputRef(name, node, port))
        if self.reader.errors.items:
            return None
        tensor_specs = [self.with_range(t) for t in tensor_specs]
        self.g.graph.update(name=self.spec_name, network=self.net_name, inputs=[t.name for t in tensor_specs],
                            outputs=[(o.name, o.node, o.port) for o in outputs], blocks=self.block_meta)
        return Network(self.net_name, self.g, tensor_specs, outputs)

    def with_range(self, t):
        """Integer inputs get the value range their consumers accept (token ids < vocab, masks 0/1)."""
        from .spec import TensorSpec
        if t.value_range or not t.dtype.startswith(("int", "bool")):
            return t
        highs = []
        for _, v, data in self.g.out_edges(t.name, data=True):
            rec = self.g.nodes[v]
            if rec["op"] == "Embedding":
                highs.append(rec["args"]["num_embeddings"])
            elif rec.get("input_names") and data["slot"] < len(rec["input_names"]) and \
                    rec["input_names"][data["slot"]] in ("mask", "key_padding_mask"):
                highs.append(2)
        high = min(highs) if highs else 2
        return TensorSpec(t.name, t.shape, t.dtype, (0, high))

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
                r = _name(r)
                if not isinstance(r, str):
                    self.err(f"`in` entries must be node names, got {r!r}", loc, node=node, file=file)
                    continue
                out.append(self.parse_ref(r, scope, raw.loc_of(i) if isinstance(raw, LocList) else loc, file))
            return out, None
        if isinstance(raw, dict):
            targets, slots = [], []
            for k, r in raw.items():
                r = _name(r)
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
            local = _name(local)  # `0:` in YAML is the int 0; torchvision-style names are digits
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
            elif _takes_no_input(entry):  # `param`: a learned tensor, not fed by the previous node
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
                # an op node's `when` may read sizes (dim): decided in shape inference (see deferred.py)
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
                    scope.table[local] = ("skip", targets[0] if targets else None, loc)
                    prev = NameRef(scope, local, None, loc, file)
                    continue
            has_op, has_block = "op" in entry, "block" in entry
            if has_op == has_block:
                self.err(f"node '{local}' needs exactly one of `op:` or `block:`", loc, node=path, file=file)
                continue
            if has_op:
                self.add_op(entry, scope, local, path, targets, slots, loc, file, block_type)
                if isinstance(cond, Deferred) and path in self.records:
                    self.records[path].when = cond
                    self.records[path].arg_locs["when"] = entry.loc_of("when")
            else:
                self.add_block(entry, scope, local, path, targets, slots, loc, file, stack)
            prev = NameRef(scope, local, None, loc, file)

    def add_op(self, entry, scope, local, path, targets, slots, loc, file, block_type):
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
            problem = _init_problem(init)
            if problem:
                self.err(f"init: {problem}", entry.loc_of("init"), node=path, file=file)
        for k in ("share", "tie", "init"):  # so share/tie errors point at the key the user wrote
            if k in entry:
                arg_locs[k] = entry.loc_of(k)
        self.records[path] = Record(path, op.name, dict(args), arg_locs, targets, slots, loc, file, block,
                                    block_type, share, _plain(tie) if tie else None,
                                    init,
                                    trainable)
        scope.table[local] = ("node", path, None)
        if len(self.records) > MAX_NODES:
            raise _TooBig()

    def add_block(self, entry, scope, local, path, targets, slots, loc, file, stack):
        name = entry["block"]
        bdef = self.blocks.get(name) if isinstance(name, str) else None
        if bdef is None:
            self.err(f"unknown block '{name}'", entry.loc_of("block"), node=path, file=file,
                     hint=did_you_mean(name, self.blocks) or (f"blocks are: {', '.join(self.blocks)}"
                                                              if self.blocks else "this spec defines no blocks"))
            return
        if name in stack:
            self.err(f"recursive block: {' -> '.join(stack + (name,))}", entry.loc_of("block"), node=path, file=file)
            return
        if len(stack) >= MAX_BLOCK_DEPTH:
            self.err(f"blocks nested deeper than {MAX_BLOCK_DEPTH}", loc, node=path, file=file)
            return
        body = bdef.body
        bfile = bdef.file
        for k in body:
            if k not in BLOCK_KEYS:
                self.err(f"unknown key '{k}' in block '{name}'", body.loc_of(k), hint=did_you_mean(k, BLOCK_KEYS),
                         file=bfile)
        decl = body.get("params") or LocDict()
        if not isinstance(decl, dict):
            self.err(f"block '{name}' params must be a mapping", body.loc_of("params"), file=bfile)
            decl = LocDict()
        block_inputs = body.get("inputs") or ["x"]
        if isinstance(block_inputs, str):
            block_inputs = [block_inputs]
        if not isinstance(block_inputs, list) or not all(isinstance(b, str) and b.isidentifier()
                                                         for b in block_inputs):
            self.err(f"block '{name}' inputs must be a list of names, got {_plain(block_inputs)!r}",
                     body.loc_of("inputs"), file=bfile)
            return
        inner_nodes = body.get("nodes")
        if not isinstance(inner_nodes, dict) or not inner_nodes:
            self.err(f"block '{name}' needs `nodes:`", bdef.loc, file=bfile)
            return
        block_outputs = body.get("outputs") or [list(inner_nodes)[-1]]
        if isinstance(block_outputs, str):
            block_outputs = [block_outputs]
        if isinstance(block_outputs, dict):
            out_pairs = list(block_outputs.items())
        elif isinstance(block_outputs, list):
            out_pairs = [(str(o).rsplit(".", 1)[-1], o) for o in block_outputs]
        else:
            self.err(f"block '{name}' outputs must be a list of its node names, got {block_outputs!r}",
                     body.loc_of("outputs"), file=bfile)
            return
        # instance args: declared block params only
        inst_args = {k: v for k, v in entry.items() if k not in NODE_KEYS}
        for k in inst_args:
            if k not in decl:
                self.err(f"block '{name}' has no param '{k}'", entry.loc_of(k), node=path, file=file,
                         hint=did_you_mean(k, decl) or (f"its params are: {', '.join(decl)}" if decl else
                                                        "it declares no params"))
        for k in ("tie", "trainable"):
            if k in entry:
                self.err(f"`{k}` applies to op nodes, not to block instances", entry.loc_of(k), node=path, file=file)
        if "share" in entry:  # every module of this instance is the one at the same path in OTHER
            other = self.ev(entry["share"], scope.env, entry.loc_of("share"), path, file)
            if isinstance(other, str) and other:
                self.block_shares.append((path, other, entry.loc_of("share"), file))
            elif other is not None:
                self.err(f"`share` must name another block instance's spec path, got {other!r}",
                         entry.loc_of("share"), node=path, file=file)
        # inputs of the instance
        if slots is not None:
            by_name = dict(zip(slots, targets))
            for s in slots:
                if s not in block_inputs:
                    self.err(f"block '{name}' has no input '{s}'", entry.loc_of("in"), node=path, file=file,
                             hint=did_you_mean(s, block_inputs))
            inst_inputs = []
            for i, b_in in enumerate(block_inputs):
                if b_in in by_name:
                    inst_inputs.append(by_name[b_in])
                elif i == 0 and "in" not in entry:
                    inst_inputs.append(targets[0] if targets else None)
                else:
                    self.err(f"block '{name}' input '{b_in}' is not connected", entry.loc_of("in"), node=path,
                             file=file)
                    return
        else:
            if len(targets) > len(block_inputs):
                self.err(f"block '{name}' takes {len(block_inputs)} input(s), got {len(targets)}",
                         entry.loc_of("in") if "in" in entry else loc, node=path, file=file)
                return
            if len(targets) < len(block_inputs):
                self.err(f"block '{name}' takes inputs {block_inputs}; connect them with in: {{...}}",
                         entry.loc_of("in") if "in" in entry else loc, node=path, file=file)
                return
            inst_inputs = list(targets)
        repeat = None
        if "repeat" in entry:
            repeat = self.ev(entry["repeat"], scope.env, entry.loc_of("repeat"), path, file)
            if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= MAX_REPEAT:
                if repeat is not None:
                    self.err(f"repeat must be an integer between 1 and {MAX_REPEAT}, got {repeat!r}",
                             entry.loc_of("repeat"), node=path, file=file)
                return
        copies = repeat or 1
        if repeat:
            self.block_meta[path] = {"block": name, "repeat": repeat, "index": None, "parent": scope.prefix[:-1]}
        export = None
        for k in range(copies):
            copy_path = f"{path}.{k}" if repeat else path
            caller_env = dict(scope.env)
            if repeat:
                caller_env["i"] = k
            values = dict(self.params)
            inner = Scope(copy_path + ".", bfile, values)  # a default may read dim() of the block's inputs
            for p, default in decl.items():
                if p in inst_args:
                    v = self.ev(inst_args[p], caller_env, entry.loc_of(p), path, file, scope=scope)
                else:
                    v = self.ev(default, values, decl.loc_of(p), f"{name}.params.{p}", bfile, scope=inner)
                values[p] = v
            values["i"] = k if repeat else 0
            for i, b_in in enumerate(block_inputs):
                target = inst_inputs[i]
                if k > 0 and i == 0:
                    target = ExportRef(export, None, loc, file)
                inner.table[b_in] = ("input", target)
            self.block_meta[copy_path] = {"block": name, "repeat": None, "index": k if repeat else None,
                                          "parent": path if repeat else scope.prefix[:-1]}
            self.sites[copy_path] = (file, loc)
            first = NameRef(inner, block_inputs[0], None, bdef.loc, bfile)
            self.expand_scope(inner_nodes, inner, first, stack + (name,), block_type=name)
            out_locs = block_outputs if isinstance(block_outputs, (LocList, LocDict)) else None
            outs = []
            for j, (port, ref) in enumerate(out_pairs):
                oloc = (out_locs.loc_of(j) if isinstance(out_locs, LocList) else
                        out_locs.loc_of(port) if isinstance(out_locs, LocDict) else bdef.loc)
                ref = _name(ref)
                if not isinstance(ref, str):
                    self.err(f"block '{name}' outputs must name its nodes, got {ref!r}", oloc, file=bfile)
                    continue
                outs.append((str(port), self.parse_ref(ref, inner, oloc, bfile)))
            export = BlockExport(copy_path, outs)
        scope.table[local] = ("block", export)

    # ---- pass 2: references, edges, shapes -----------------------------------------------------
    def resolve(self, target, depth=0):
        if depth > 10_000:
            raise RefError("reference chain too long (a node refers to itself through block inputs?)", None, None)
        if isinstance(target, NodeRef):
            return target.node, target.port
        if isinstance(target, ExportRef):
            exp = target.export
            if target.port is None:
                return self.resolve(exp.outputs[0][1], depth + 1)
            for port, t in exp.outputs:
                if port == target.port:
                    return self.resolve(t, depth + 1)
            raise RefError(f"block '{exp.path}' has no output '{target.port}'", target.loc, target.file,
                           hint=did_you_mean(target.port, [p for p, _ in exp.outputs]))
        if target is None:
            raise RefError("missing input", None, None)
        scope, name, port = target.scope, target.name, target.port
        entry = scope.table.get(name)
        if entry is None:
            raise RefError(f"unknown node '{name}'" + (f" (in {scope.prefix[:-1]})" if scope.prefix else ""),
                           target.loc, target.file, hint=did_you_mean(name, scope.declared | set(scope.table)),
                           undeclared=name not in scope.declared)
        kind = entry[0]
        if kind == "input":
            if port is not None:
                raise RefError(f"'{name}' is an input and has no port '{port}'", target.loc, target.file)
            return self.resolve(entry[1], depth + 1)
        if kind == "skip":
            return self.resolve(entry[1], depth + 1)
        if kind == "block":
            return self.resolve(ExportRef(entry[1], port, target.loc, target.file), depth + 1)
        path = entry[1]
        rec = self.records.get(path)
        op = ops_pkg.get(rec.op) if rec else None
        try:
            ports = tuple(op.port_names(rec.args)) if op else ("out",)
        except Exception:  # arguments the op's port rule cannot read: its shape rule will say why
            ports = ()
        if not all(isinstance(p, str) for p in ports):
            ports = ()  # port names from odd arguments (split names: [1, [2]]): the shape rule rejects them
        if port is None or not ports:
            return path, ports[0] if ports else (port or "out")
        if port not in ports:
            raise RefError(f"'{name}' ({rec.op if rec else '?'}) has no output port '{port}'", target.loc,
                           target.file, hint=did_you_mean(port, ports) or f"its ports are: {', '.join(ports)}")
        return path, port

    def report_dangling(self, out_targets):
        """After errors in pass 1, still report references to names never written (more errors per run);
        references into nodes that failed are follow-on errors and stay quiet."""
        targets = [(t, rec) for rec in self.records.values() for t in rec.inputs]
        targets += [(t, None) for _, t in out_targets]
        for t, rec in targets:
            try:
                self.resolve(t)
            except RefError as e:
                if e.undeclared:
                    self.err(str(e), e.loc or (rec.loc if rec else None), node=rec.path if rec else None,
                             hint=e.hint, file=e.file or (rec.file if rec else None))
            except Exception:
                pass

    def resolve_edges(self):
        for path, rec in self.records.items():
            resolved = []
            for t in rec.inputs:
                try:
                    resolved.append(self.resolve(t))
                except RefError as e:
                    self.err(str(e), e.loc or rec.loc, node=path, hint=e.hint, file=e.file or rec.file)
            rec.inputs = resolved
        if self.reader.errors.items:
            return
        for path, rec in self.records.items():
            self.g.add_node(path)
        for path, rec in self.records.items():
            for slot, (src, port) in enumerate(rec.inputs):
                self.g.add_edge(src, path, port=port, slot=slot)
        try:
            cycle = nx.find_cycle(self.g)
        except nx.NetworkXNoCycle:
            self.put_in_topological_order()
            return
        names = [u for u, *_ in cycle] + [cycle[0][0]]
        rec = self.records[cycle[0][0]]
        self.err(f"cycle: {' -> '.join(names)}", rec.loc, node=cycle[0][0], file=rec.file)

    def put_in_topological_order(self):
        """`in:` may name a later node; the graph's node order is nevertheless one every later stage can
        walk front to back (the spec's order wherever the references allow it)."""
        order = {n: i for i, n in enumerate(self.g.nodes)}
        topo = list(nx.lexicographical_topological_sort(self.g, key=lambda n: order[n]))
        if topo == list(self.g.nodes):
            return
        g = nx.MultiDiGraph()
        g.graph.update(self.g.graph)
        for n in topo:
            g.add_node(n, **self.g.nodes[n])
        for u, v, k, d in self.g.edges(keys=True, data=True):
            g.add_edge(u, v, key=k, **d)
        self.g = g

    def infer_all(self):
        order = {n: i for i, n in enumerate(self.g.nodes)}
        failed: set[str] = set()
        for path in nx.lexicographical_topological_sort(self.g, key=lambda n: order[n]):
            rec = self.records.get(path)
            if rec is None:
                continue  # an input node
            if any(src in failed for src, _ in rec.inputs):
                failed.add(path)
                continue
            if not self.infer_node(rec):
                failed.add(path)
        if not self.reader.errors.items:
            self.check_shares()

    def infer_node(self, rec: Record) -> bool:
        op = ops_pkg.get(rec.op)
        node_err = lambda msg, loc=None, hint=None: self.err(msg, loc or rec.loc, node=rec.path,
                                                             hint=hint or self.site_note(rec), file=rec.file)
        if not resolve_args(self, rec, lambda msg, loc: node_err(msg, loc)):
            return False
        if not decide_when(self, rec, lambda msg, loc: node_err(msg, loc)):
            return False
        op = ops_pkg.get(rec.op)  # a node skipped by its `when` is an Identity now
        lo, hi = op.arity
        n = len(rec.inputs)
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi else f"at least {lo}"
            node_err(f"{rec.op} takes {want} input(s), got {n}")
            return False
        if rec.slots is not None:
            if not op.slots:
                node_err(f"{rec.op} does not take named inputs; use a name or a list")
                return False
            for s in rec.slots:
                if s not in op.slots:
                    node_err(f"{rec.op} has no input '{s}'", hint=did_you_mean(s, op.slots) or
                             f"its inputs are: {', '.join(op.slots)}")
                    return False
            for s in op.required_slots:
                if s not in rec.slots:
                    node_err(f"{rec.op} needs input '{s}'")
                    return False
        allowed = op.allowed_args()
        ok = True
        for k in rec.args:
            if k not in allowed:
                node_err(f"{rec.op} has no argument '{k}'", rec.arg_locs.get(k),
                         hint=did_you_mean(k, allowed) or (f"its arguments are: {', '.join(allowed)}"
                                                           if allowed else f"{rec.op} takes no arguments"))
                ok = False
        misspelt = {did_you_mean(k, allowed) for k in rec.args if k not in allowed}
        for k in op.required:
            if k not in rec.args and f"did you mean '{k}'?" not in misspelt:
                node_err(f"{rec.op} needs argument '{k}'")
                ok = False
            elif k not in rec.args:
                ok = False
        if op.torch_class is not None:
            hints = _arg_hints(op.torch_class)
            for k, v in list(rec.args.items()):
                if k in hints:
                    fits, v = _conform(v, hints[k])
                    if not fits:
                        node_err(f"{rec.op} argument {k} must be {_describe_hint(hints[k])}, got {v!r}",
                                 rec.arg_locs.get(k))
                        ok = False
                    rec.args[k] = v
        if not ok:
            return False
        shapes, dtypes = [], []
        for src, port in rec.inputs:
            d = self.g.nodes[src]
            if port not in d["out_shapes"]:  # ports that follow from the shape rule (split by size)
                node_err(f"'{src}' ({d['op']}) has no output port '{port}'",
                         hint=f"its ports are: {', '.join(d['out_shapes'])}")
                return False
            shapes.append(tuple(d["out_shapes"][port]))
            dtypes.append(d["dtype"])
        if op.in_dtype == "float":
            for (src, _), dt in zip(rec.inputs, dtypes):
                if not dt.startswith(("float", "bfloat")):
                    node_err(f"{rec.op} expects floating-point input, got {dt} from '{src}'")
                    return False
        elif op.in_dtype == "int" and not dtypes[0].startswith(("int", "uint")):
            node_err(f"{rec.op} expects integer indices, got {dtypes[0]} from '{rec.inputs[0][0]}'",
                     hint="declare the input with dtype: int64")
            return False
        ctx = InferContext(shapes, dtypes, dict(rec.args), rec.slots)
        try:
            out = op.infer(ctx)
            if not isinstance(out, dict):
                out = {op.port_names(ctx.args)[0]: tuple(out)}
            dtype = op.out_dtype(ctx) if op.out_dtype else ("float32" if op.in_dtype == "int" else dtypes[0])
        except ShapeError as e:
            node_err(str(e))
            return False
        except Exception as e:  # an op's shape rule tripping over a value of the wrong kind
            node_err(f"invalid arguments for {rec.op}: {_exc_text(e)}")
            return False
        for port, shape in out.items():
            if not isinstance(port, str) or not port:
                node_err(f"invalid arguments for {rec.op}: output port names must be words, got {port!r}")
                return False
            if not isinstance(shape, tuple) or not all(S.is_static(d) or isinstance(d, str) for d in shape):
                node_err(f"invalid arguments for {rec.op}: output shape {shape!r} is not a list of sizes")
                return False
            for d in shape:
                if S.is_static(d) and d <= 0:
                    culprits = [f"{k}={v}" for k, v in rec.args.items() if v == d and _is_int(v)]
                    node_err(f"output {S.fmt(shape)} has a non-positive size" +
                             (f" ({', '.join(culprits)})" if culprits else ""),
                             rec.arg_locs.get(culprits[0].split("=")[0]) if culprits else None)
                    return False
            elements = 1
            for d in S.concrete(shape):
                elements *= d
            if elements > MAX_ELEMENTS:
                node_err(f"output {S.fmt(shape)} has {elements:.3g} elements per example: absurd size")
                return False
        try:
            param_shapes = self.param_shapes(op, ctx.args)
        except Exception as e:  # torch's own argument checks
            node_err(f"invalid arguments for {rec.op}: {_exc_text(e)}")
            return False
        for pname, shape in param_shapes.items():
            if 0 in shape:
                culprits = [f"{k}={v}" for k, v in rec.args.items() if v == 0 and _is_int(v)]
                node_err(f"parameter {pname} {S.fmt(shape)} is empty" +
                         (f" ({', '.join(culprits)})" if culprits else ""),
                         rec.arg_locs.get(culprits[0].split("=")[0]) if culprits else None)
                return False
        params = 0
        for shape in param_shapes.values():
            n = 1
            for d in shape:
                n *= d
            params += n
        buffers = self.buffer_elements(op, ctx.args)
        if buffers > MAX_PARAMS:
            node_err(f"{buffers:.3g} buffer elements in one node (a table of max_len x dim?): absurd size")
            return False
        if params > MAX_PARAMS:
            node_err(f"{params:.3g} parameters in one node: absurd size")
            return False
        try:
            macs = int(op.macs(ctx, out)) if op.macs else 0
        except Exception:
            macs = 0
        ports = list(out)
        if not ports:
            node_err(f"invalid arguments for {rec.op}: it would have no outputs")
            return False
        self.g.add_node(rec.path, op=rec.op, args=ctx.args, inputs=[tuple(x) for x in rec.inputs],
                        input_names=rec.slots, in_shapes=shapes, out_shapes=out, out_shape=out[ports[0]],
                        dtype=dtype, ports=ports, params=params, trainable_params=params if rec.trainable else 0,
                        macs=macs, param_shapes=param_shapes, block=rec.block, block_type=rec.block_type,
                        source=f"{rec.file}:{rec.loc[0]}:{rec.loc[1]}" if rec.loc else rec.file,
                        line=rec.loc[0] if rec.loc else None, col=rec.loc[1] if rec.loc else None,
                        share=rec.share, tie=rec.tie, init=rec.init, trainable=rec.trainable)
        for u, v, key, data in self.g.in_edges(rec.path, keys=True, data=True):
            data["shape"] = self.g.nodes[u]["out_shapes"][data["port"]]
        return True

    _shape_cache: dict = {}

    def param_shapes(self, op, args) -> dict:
        """Build the op's module on the meta device (no memory) to let torch check the arguments and to
        read its parameter shapes; cached per (op, args) since repeated blocks repeat the same layers."""
        key = (op.name, repr(sorted(args.items(), key=lambda kv: kv[0])))
        cached = self._shape_cache.get(key)
        if cached is None:
            with meta_device():
                module = op.build(args) if op.build else None
            shapes = {k: tuple(p.shape) for k, p in module.named_parameters()} if module is not None else {}
            buffers = sum(b.numel() for b in module.buffers()) if module is not None else 0
            cached = (shapes, buffers)
            if len(self._shape_cache) > 4096:
                self._shape_cache.clear()
            self._shape_cache[key] = cached
        return dict(cached[0])

    def buffer_elements(self, op, args) -> int:
        """Elements of the op's buffers (a positional table, running statistics); after param_shapes."""
        key = (op.name, repr(sorted(args.items(), key=lambda kv: kv[0])))
        return self._shape_cache.get(key, ({}, 0))[1]

    def check_shares(self):
        for path, rec in self.records.items():
            node = self.g.nodes[path]
            share_loc = rec.arg_locs.get("share", rec.loc)
            tie_loc = rec.arg_locs.get("tie", rec.loc)
            if rec.share:
                other = self.g.nodes.get(rec.share) if rec.share in self.records else None
                if other is None:
                    self.err(f"share: no node '{rec.share}'", share_loc, node=path, file=rec.file,
                             hint=did_you_mean(rec.share, [p for p in self.records if p != path]))
                    continue
                if other.get("share"):
                    self.err(f"share: '{rec.share}' itself shares another node's module; share that one",
                             share_loc, node=path, file=rec.file)
                    continue
                if other["op"] != node["op"] or _public(other["args"]) != _public(node["args"]):
                    self.err(f"cannot share {rec.share} ({other['op']} {_public(other['args'])}) with a "
                             f"{node['op']} {_public(node['args'])}", share_loc, node=path, file=rec.file)
                    continue
                node["params"] = node["trainable_params"] = 0
            if rec.tie and rec.share:
                self.err("a node with `share` has no parameters of its own to `tie`", tie_loc, node=path,
                         file=rec.file)
                continue
            if rec.tie:
                for pname, target in rec.tie.items():
                    tnode, _, tparam = target.rpartition(".")
                    if pname not in node["param_shapes"]:
                        self.err(f"tie: {node['op']} has no parameter '{pname}'", tie_loc, node=path, file=rec.file,
                                 hint=did_you_mean(pname, node["param_shapes"]))
                        continue
                    if tnode not in self.records:
                        self.err(f"tie: no node '{tnode}'", tie_loc, node=path, file=rec.file,
                                 hint=did_you_mean(tnode, [p for p in self.records if p != path]))
                        continue
                    tshapes = self.g.nodes[tnode]["param_shapes"]
                    if tparam not in tshapes:
                        self.err(f"tie: '{tnode}' has no parameter '{tparam}'", tie_loc, node=path, file=rec.file,
                                 hint=did_you_mean(tparam, tshapes))
                        continue
                    if tshapes[tparam] != node["param_shapes"][pname]:
                        self.err(f"tie: cannot tie {pname} {S.fmt(node['param_shapes'][pname])} to {target} "
                                 f"{S.fmt(tshapes[tparam])}", tie_loc, node=path, file=rec.file)
                        continue
                    root = self.tie_root(path, pname)
                    if root is None:
                        self.err(f"tie: {path}.{pname} is tied back to itself (through {target})", tie_loc,
                                 node=path, file=rec.file)
                        continue
                    # the parameter that really holds the values: chains (c -> b -> a) and shared modules
                    # resolve to it, so compile ties every link to the same Parameter in any order
                    node["tie"] = {**node["tie"], pname: f"{root[0]}.{root[1]}"}
                    n = 1
                    for d in tshapes[tparam]:
                        n *= d
                    node["params"] -= n
                    if node["trainable"]:
                        node["trainable_params"] -= n


    def site_note(self, rec) -> str | None:
        """For an error inside an imported file: where the spec being checked uses that block."""
        if rec.file == self.reader.file:
            return None
        block = rec.block
        while block:
            file, loc = self.sites.get(block, (None, None))
            if file == self.reader.file and loc:
                return f"in block '{self.block_meta[block]['block']}' used at {file}:{loc[0]}"
            block = self.block_meta.get(block, {}).get("parent", "")
        return None

    def tie_root(self, path: str, pname: str):
        """(node, param) that owns the values of path.pname after following ties and shares; None on a cycle."""
        seen = set()
        node, param = path, pname
        while (node, param) not in seen:
            seen.add((node, param))
            rec = self.records.get(node)
            if rec is None:
                return node, param
            if rec.share:
                node = rec.share
            elif rec.tie and param in rec.tie:
                node, _, param = rec.tie[param].rpartition(".")
            else:
                return node, param
        return None


def _name(value):
    """A node name as written: YAML reads `0:` or `in: 6` as ints, which name nodes `0` and `6`."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _takes_no_input(entry) -> bool:
    op = ops_pkg.get(entry.get("op")) if isinstance(entry.get("op"), str) else None
    return op is not None and op.arity[1] == 0


def _init_problem(init) -> str | None:
    """What is wrong with a node's `init:` (an initialiser name, {type: ..., options} or a list of them)."""
    from .errors import UserError
    from .initializers import _init_fn, _rules
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
        return f"invalid initialiser options: {_exc_text(e)}"
    return None


def _exc_text(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__





# ---- argument types from the torch class's own annotations ------------------------------------------

@functools.lru_cache(maxsize=None)
def _arg_hints(cls) -> dict:
    try:
        return {k: v for k, v in typing.get_type_hints(cls.__init__).items() if k != "return"}
    except Exception:  # unresolvable annotations: torch's own checks still run when the module is built
        return {}


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _conform(value, hint):
    """Does `value` (plain YAML data) fit the annotation `hint`? Returns (ok, value to use).

    Accepted: lists stand for tuples, an int for a float, and a string that YAML 1.1 left
    unparsed ("1e-5") for a float. Annotations this checker does not understand accept anything.
    """
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return True, value
    if hint is type(None):
        return value is None, value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            ok, v = _conform(value, option)
            if ok:
                return True, v
        return False, value
    if origin is typing.Literal:
        return value in typing.get_args(hint), value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return _is_int(value), value
    if hint is float:
        if _is_int(value) or isinstance(value, float):
            return True, float(value) if _is_int(value) else value
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return False, value
    if hint is str:
        return isinstance(value, str), value
    if origin in (tuple, list) or hint is torch.Size:
        if not isinstance(value, (list, tuple)):
            return False, value
        items = typing.get_args(hint) if origin is not None else (int, ...)
        if origin is list:
            items = (items[0] if items else typing.Any, ...)
        if len(items) == 2 and items[1] is Ellipsis:
            kinds = [items[0]] * len(value)
        elif items:
            if len(value) != len(items):
                return False, value
            kinds = list(items)
        else:
            kinds = [typing.Any] * len(value)
        out = []
        for v, k in zip(value, kinds):
            ok, v = _conform(v, k)
            if not ok:
                return False, value
            out.append(v)
        return True, out
    if hint is torch.Tensor or (isinstance(hint, type) and issubclass(hint, torch.nn.Module)):
        return False, value  # cannot be written in a spec
    return True, value


def _describe_hint(hint) -> str:
    origin = typing.get_origin(hint)
    if hint is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_hint(h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (tuple, list) or hint is torch.Size:
        items = typing.get_args(hint)
        if origin is list or not items:
            return f"a list of {_describe_hint(items[0]) if items else 'int'}s"
        if len(items) == 2 and items[1] is Ellipsis:
            return f"a list of {_describe_hint(items[0])}s"
        return "[" + ", ".join(_describe_hint(h) for h in items) + "]"
    if hint is torch.Tensor:
        return "a tensor (which a spec cannot hold)"
    return getattr(hint, "__name__", str(hint))
