"""Inference: one walk over a wired graph in topological order that turns each NodeDraft into a NodeRecord.

Like torch.fx's ShapeProp, it runs on any graph of the right form, not only on one the expansion made:
a networkx.MultiDiGraph whose nodes carry a NodeDraft under `"draft"` (sources in order, matching edges
that carry `port` and `slot`). For each node, small steps in order: argument check, input shapes, the op's
shape rule, output check, parameter count (on the meta device: no weight is allocated). A node whose
source failed is skipped quietly (a follow-on error). The NodeRecord is made here and nowhere else.
"""
from __future__ import annotations

import dataclasses

import networkx as nx

from builder.shapes import dimenv
from builder.graph import macs as macs_pkg
from builder import ops as ops_pkg
from builder.shapes import rules as S
from builder.graph.argtypes import arg_hints, conform, describe_hint, first_line, is_int
from builder.graph.deferred import settle
from builder.core.errors import Diagnostic, did_you_mean
from builder.graph.meta import meta_device
from builder.ops.registry import InferContext
from builder.shapes.rules import ShapeError
from builder.core.types import DRAFT_KEY, MAX_ELEMENTS, MAX_PARAMS, RECORD_KEY, NodeDraft, NodeRecord


class NodeFailed(Exception):
    """A step found the node wrong; the message (and optionally the key to point at) goes to the user."""

    def __init__(self, message, loc=None, hint=None):
        super().__init__(message)
        self.loc, self.hint = loc, hint


class Failures(NodeFailed):
    """Several problems of one node, each reported (the argument check reports them all)."""

    def __init__(self, problems):
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


class ParamShapeCache:
    """Parameter shapes and buffer sizes of an op's module, keyed by (op, args): repeated blocks repeat the
    same layers. One per spec being read (never shared between builds)."""

    LIMIT = 4096

    def __init__(self):
        self.entries: dict = {}

    def get(self, op, args) -> tuple[dict, int]:
        """(parameter name -> shape, buffer elements); building the module lets torch check the arguments."""
        key = (op.name, repr(sorted(args.items(), key=lambda kv: kv[0])))
        cached = self.entries.get(key)
        if cached is None:
            with meta_device():
                module = op.build(args) if op.build else None
            shapes = {k: tuple(p.shape) for k, p in module.named_parameters()} if module is not None else {}
            buffers = sum(b.numel() for b in module.buffers()) if module is not None else 0
            cached = (shapes, buffers)
            if len(self.entries) > self.LIMIT:
                self.entries.clear()
            self.entries[key] = cached
        return dict(cached[0]), cached[1]


def infer_shapes(g: nx.MultiDiGraph, diagnostics: list, note=None, cache: ParamShapeCache | None = None,
                 dims: dict | None = None) -> bool:
    """Give every node of `g` its NodeRecord (under `"record"`) and every edge its `shape`. Errors are
    appended to `diagnostics`; `note(draft)` may supply a hint for a node's error (where a block is used).
    `dims`: the `dims:` declarations (name -> DimDecl); what inference learns about each dim (the minimum
    a node needs, ...) goes to `g.graph["dims"]`. Returns True when every node was inferred."""
    cache = cache or ParamShapeCache()
    env = dimenv.DimEnv(dict(dims or {}))
    order = {n: i for i, n in enumerate(g.nodes)}
    failed: set[str] = set()
    with dimenv.active(env):
        for path in nx.lexicographical_topological_sort(g, key=lambda n: order[n]):
            draft = g.nodes[path][DRAFT_KEY]
            if any(src in failed for src, _ in draft.sources):
                failed.add(path)
                continue
            env.node = path
            try:
                g.nodes[path][RECORD_KEY] = infer_node(g, draft, cache)
            except NodeFailed as e:
                for problem in getattr(e, "problems", [e]):
                    line, col = problem.loc or draft.loc or (None, None)
                    hint = problem.hint or (note(draft) if note else None)
                    diagnostics.append(Diagnostic(str(problem), draft.file, line, col, draft.path, hint))
                failed.add(path)
                continue
            for u, _, data in g.in_edges(path, data=True):
                data["shape"] = g.nodes[u][RECORD_KEY].out_shapes[data["port"]]
        g.graph["dims"] = env.summary()
        if not failed:  # MACs at the final example sizes: a later node may have raised a minimum
            for path in g.nodes:
                rec = g.nodes[path][RECORD_KEY]
                g.nodes[path][RECORD_KEY] = dataclasses.replace(rec, macs=macs_pkg.record_macs(g, rec))
    return not failed


def infer_node(g, draft: NodeDraft, cache: ParamShapeCache) -> NodeRecord:
    """The steps for one node; raises NodeFailed."""
    if draft.op == "input":
        return make_record(draft, {}, (), {"out": draft.shape}, draft.dtype, {}, 0, 0)
    draft = settle_sizes(g, draft)
    op = ops_pkg.get(draft.op)
    check_sources(op, draft)
    args = check_arguments(op, draft)
    shapes, dtypes = input_shapes(op, g, draft)
    ctx = InferContext(shapes, dtypes, dict(args), list(draft.slots) if draft.slots is not None else None)
    out, dtype = run_shape_rule(op, draft, ctx)
    check_outputs(draft, out, args)
    param_shapes, params = count_parameters(op, draft, ctx.args, cache, args)
    if not out:
        raise NodeFailed(f"invalid arguments for {draft.op}: it would have no outputs")
    return make_record(draft, ctx.args, tuple(shapes), out, dtype, param_shapes, params, 0)


def settle_sizes(g, draft: NodeDraft) -> NodeDraft:
    """Arguments and a `when:` that read sizes (dim), evaluated now that the sources are inferred; the
    settled draft replaces the written one in the graph (a node whose `when` is false is an Identity)."""
    def failed(message, key):
        raise NodeFailed(message, draft.arg_locs.get(key))
    settled = settle(g, draft, failed)
    if settled is not draft:
        g.nodes[draft.path][DRAFT_KEY] = settled
    return settled


def make_record(draft, args, in_shapes, out_shapes, dtype, param_shapes, params, macs) -> NodeRecord:
    """The one place a NodeRecord is made."""
    line, col = draft.loc or (None, None)
    return NodeRecord(path=draft.path, op=draft.op, args=args, sources=tuple(draft.sources), slots=draft.slots,
                      in_shapes=in_shapes, out_shapes=out_shapes, ports=tuple(out_shapes), dtype=dtype,
                      param_count=params, trainable_param_count=params if draft.trainable else 0, macs=macs,
                      param_shapes=param_shapes, block=draft.block, block_type=draft.block_type, file=draft.file,
                      line=line, col=col, share=draft.share, tie=draft.tie, init=draft.init,
                      trainable=draft.trainable)


def check_sources(op, draft):
    """The number of sources and the names of dict-`in:` slots."""
    lo, hi = op.arity
    n = len(draft.sources)
    if n < lo or (hi is not None and n > hi):
        want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi else f"at least {lo}"
        raise NodeFailed(f"{draft.op} takes {want} input(s), got {n}")
    if draft.slots is not None:
        if not op.slots:
            raise NodeFailed(f"{draft.op} does not take named inputs; use a name or a list")
        for s in draft.slots:
            if s not in op.slots:
                raise NodeFailed(f"{draft.op} has no input '{s}'", hint=did_you_mean(s, op.slots) or
                                 f"its inputs are: {', '.join(op.slots)}")
        for s in op.required_slots:
            if s not in draft.slots:
                raise NodeFailed(f"{draft.op} needs input '{s}'")


def check_arguments(op, draft) -> dict:
    """Argument names (unknown, missing) and kinds (from the torch class's annotations): every problem is
    reported, then the node fails. Returns the arguments converted to what the constructor wants."""
    problems = []
    args = dict(draft.args)
    allowed = op.allowed_args()
    for k in args:
        if k not in allowed:
            problems.append(NodeFailed(f"{draft.op} has no argument '{k}'", draft.arg_locs.get(k),
                                       hint=did_you_mean(k, allowed) or (f"its arguments are: {', '.join(allowed)}"
                                                                         if allowed else
                                                                         f"{draft.op} takes no arguments")))
    misspelt = {did_you_mean(k, allowed) for k in args if k not in allowed}
    missing = False
    for k in op.required:
        if k not in args and f"did you mean '{k}'?" not in misspelt:
            problems.append(NodeFailed(f"{draft.op} needs argument '{k}'"))
        elif k not in args:
            missing = True  # the misspelling was reported
    if op.torch_class is not None:
        hints = arg_hints(op.torch_class)
        for k, v in list(args.items()):
            if k in hints:
                fits, v = conform(v, hints[k])
                if not fits:
                    problems.append(NodeFailed(f"{draft.op} argument {k} must be {describe_hint(hints[k])}, "
                                               f"got {v!r}", draft.arg_locs.get(k)))
                args[k] = v
    if problems or missing:
        raise Failures(problems)
    return args


def input_shapes(op, g, draft) -> tuple[list, list]:
    """Shapes and dtypes of the node's sources, and the op's dtype requirement."""
    shapes, dtypes = [], []
    for src, port in draft.sources:
        rec = g.nodes[src][RECORD_KEY]
        if port not in rec.out_shapes:  # ports that follow from the shape rule (split by size)
            raise NodeFailed(f"'{src}' ({rec.op}) has no output port '{port}'",
                             hint=f"its ports are: {', '.join(rec.out_shapes)}")
        shapes.append(tuple(rec.out_shapes[port]))
        dtypes.append(rec.dtype)
    if op.in_dtype == "float":
        for (src, _), dt in zip(draft.sources, dtypes):
            if not dt.startswith(("float", "bfloat")):
                raise NodeFailed(f"{draft.op} expects floating-point input, got {dt} from '{src}'")
    elif op.in_dtype == "int" and not dtypes[0].startswith(("int", "uint")):
        raise NodeFailed(f"{draft.op} expects integer indices, got {dtypes[0]} from '{draft.sources[0][0]}'",
                         hint="declare the input with dtype: int64")
    return shapes, dtypes


def run_shape_rule(op, draft, ctx) -> tuple[dict, str]:
    """The op's own shape rule -> (port -> shape, output dtype)."""
    try:
        out = op.infer(ctx)
        if not isinstance(out, dict):
            out = {op.port_names(ctx.args)[0]: tuple(out)}
        dtype = op.out_dtype(ctx) if op.out_dtype else ("float32" if op.in_dtype == "int" else ctx.dtypes[0])
    except ShapeError as e:
        raise NodeFailed(str(e)) from None
    except Exception as e:  # an op's shape rule tripping over a value of the wrong kind
        raise NodeFailed(f"invalid arguments for {draft.op}: {first_line(e)}") from None
    return out, dtype


def check_outputs(draft, out: dict, args: dict):
    """Port names are words; shapes are lists of sizes, positive and not absurdly large (`args`: the
    checked arguments, to name the one that made a size zero)."""
    for port, shape in out.items():
        if not isinstance(port, str) or not port:
            raise NodeFailed(f"invalid arguments for {draft.op}: output port names must be words, got {port!r}")
        if not isinstance(shape, tuple) or not all(S.is_static(d) or isinstance(d, str) for d in shape):
            raise NodeFailed(f"invalid arguments for {draft.op}: output shape {shape!r} is not a list of sizes")
        for d in shape:
            if S.is_static(d) and d <= 0:
                raise _blame(draft, args, d, f"output {S.fmt(shape)} has a non-positive size")
            if not S.is_static(d):
                if not S.is_dim_expression(d):
                    culprits = [k for k, v in args.items() if v == d]
                    raise NodeFailed(f"invalid arguments for {draft.op}: output size {d!r} is neither a number nor "
                                     f"a size expression" + (f" ({culprits[0]}={d!r})" if culprits else ""),
                                     draft.arg_locs.get(culprits[0]) if culprits else None)
                try:  # every size the declarations allow must give a non-empty output
                    S.require(d, 1, f"output size {d}")
                except ShapeError as e:
                    raise NodeFailed(str(e)) from None
        elements = 1
        for d in S.concrete(shape):
            elements *= d
        if elements > MAX_ELEMENTS:
            raise NodeFailed(f"output {S.fmt(shape)} has {elements:.3g} elements per example: absurd size")


def count_parameters(op, draft, args, cache: ParamShapeCache, written: dict) -> tuple[dict, int]:
    """Parameter shapes (building the module on the meta device, so torch checks the arguments too) and the
    number of parameter elements (`written`: the checked arguments without inferred sizes, for blame)."""
    try:
        param_shapes, buffers = cache.get(op, args)
    except Exception as e:  # torch's own argument checks
        raise NodeFailed(f"invalid arguments for {draft.op}: {first_line(e)}") from None
    for pname, shape in param_shapes.items():
        if 0 in shape:
            raise _blame(draft, written, 0, f"parameter {pname} {S.fmt(shape)} is empty")
    count = 0
    for shape in param_shapes.values():
        n = 1
        for d in shape:
            n *= d
        count += n
    if buffers > MAX_PARAMS:
        raise NodeFailed(f"{buffers:.3g} buffer elements in one node (a table of max_len x dim?): absurd size")
    if count > MAX_PARAMS:
        raise NodeFailed(f"{count:.3g} parameters in one node: absurd size")
    return param_shapes, count


def _blame(draft, args, size, message) -> NodeFailed:
    """A size problem, naming (and pointing at) the arguments that equal the bad size."""
    culprits = [f"{k}={v}" for k, v in args.items() if v == size and is_int(v)]
    return NodeFailed(message + (f" ({', '.join(culprits)})" if culprits else ""),
                      draft.arg_locs.get(culprits[0].split("=")[0]) if culprits else None)
