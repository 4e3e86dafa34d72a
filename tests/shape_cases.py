"""Random cases for the shape property tests (tests/test_shape_properties.py, benchmarks/shape_fuzz.py).

`OP_CASES[op]` draws, with a hypothesis `draw`, the input shapes (ints and dim names), dtypes and
arguments of one call of that op; `check_op_case` infers its shapes under a fresh DimEnv, draws concrete
sizes the env allows, builds the real module on the meta device and compares. `chain_spec` writes a
spec of 2-6 shape-changing ops whose every node is an output, `check_chain` compares `build summary
--json`'s shapes, evaluated at random sizes, with the built module's real outputs.
"""
from __future__ import annotations

import json
import math

import torch
from hypothesis import strategies as st

from builder.shapes import dimenv
from builder.shapes import dimexpr
from builder import ops as ops_pkg
from builder.shapes import rules as S
from builder.graph.meta import meta_device
from builder.ops.registry import InferContext
from builder.core.types import record
from shape_cases_llm import with_llm_variants

SYMS = ("B", "H", "W", "T")


class Rejected(Exception):
    """The drawn case is invalid and the shape rule said so (nothing to compare)."""


def _dim(draw, lo=1, hi=9, sym=True):
    return draw(st.sampled_from(SYMS)) if sym and draw(st.booleans()) else draw(st.integers(lo, hi))


def _shape(draw, rank, static_last=False):
    dims = [_dim(draw) for _ in range(rank)]
    if static_last and dims:
        dims[-1] = draw(st.integers(1, 8))
    return tuple(dims)


def _rank(draw, lo=1, hi=4):
    return draw(st.integers(lo, hi))


def _single(args_fn=lambda draw, shape: {}, lo=1, hi=4, static_last=False, dtype="float32"):
    def case(draw):
        shape = _shape(draw, _rank(draw, lo, hi), static_last)
        return [shape], [dtype], args_fn(draw, shape), None
    return case


def _dim_arg(draw, shape):
    return draw(st.integers(-len(shape), len(shape) - 1))


def _channels_case(nd, make_args, unbatched_ok=True, channels=(1, 2, 3, 4, 6)):
    """[B, C, *spatial] (or [C, *spatial]) with a static C."""
    def case(draw):
        c = draw(st.sampled_from(channels))
        spatial = tuple(_dim(draw, 1, 14) for _ in range(nd))
        batched = not unbatched_ok or draw(st.booleans())
        shape = ((_dim(draw, 1, 3),) if batched else ()) + (c,) + spatial
        return [shape], ["float32"], make_args(draw, c), None
    return case


def _conv_args(nd, transposed):
    def make(draw, c):
        groups = draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0]))
        args = {"out_channels": groups * draw(st.integers(1, 3)), "groups": groups,
                "kernel_size": draw(st.integers(1, 5)) if draw(st.booleans())
                else [draw(st.integers(1, 5)) for _ in range(nd)],
                "stride": draw(st.integers(1, 3)), "dilation": draw(st.integers(1, 2)),
                "bias": draw(st.booleans())}
        if transposed:
            args["padding"] = draw(st.integers(0, 2))
            args["output_padding"] = draw(st.integers(0, max(args["stride"], args["dilation"]) - 1))
        else:
            args["padding"] = draw(st.sampled_from((0, 1, 2, 3, "same", "valid") + (("causal",) if nd == 1 else ())))
            if args["padding"] == "same":
                args["stride"] = 1
        return args
    return make


def _pool_args(nd, kind):
    def make(draw, c):
        k = draw(st.integers(1, 4))
        args = {"kernel_size": k, "stride": draw(st.sampled_from((None, 1, 2, 3))),
                "padding": draw(st.integers(0, k // 2)), "ceil_mode": draw(st.booleans())}
        if kind == "Max":
            args["dilation"] = draw(st.integers(1, 2))
        return args
    return make


def _adaptive_args(nd):
    def make(draw, c):
        size = [draw(st.sampled_from((None, 1, 2, 3))) for _ in range(nd)]
        return {"output_size": size if nd > 1 else size[0] or 1}
    return make


def _elementwise(n_max):
    def case(draw):
        base = _shape(draw, _rank(draw, 1, 4))
        shapes = []
        for _ in range(draw(st.integers(2, n_max))):
            s = tuple(1 if draw(st.integers(0, 4)) == 0 else d for d in base)
            shapes.append(s[draw(st.integers(0, len(s) - 1)):] if draw(st.booleans()) else s)
        return shapes, ["float32"] * len(shapes), {}, None
    return case


def _join(stack):
    def case(draw):
        base = list(_shape(draw, _rank(draw, 1, 4)))
        n = draw(st.integers(1, 3))
        dim = draw(st.integers(-len(base) - stack, len(base) - 1 + stack))
        shapes = []
        for _ in range(n):
            s = list(base)
            if not stack:
                s[dim] = _dim(draw)
            shapes.append(tuple(s))
        return shapes, ["float32"] * n, {"dim": dim}, None
    return case


def _reshape(draw):
    shape = _shape(draw, _rank(draw, 1, 4))
    kind = draw(st.sampled_from(("flat", "keep_first", "keep_last", "zero", "factor")))
    if kind == "flat":
        target = [-1]
    elif kind == "keep_first":
        target = [shape[0], -1]
    elif kind == "keep_last":
        target = [-1, shape[-1]]
    elif kind == "zero":
        target = [0, -1]
    else:
        statics = [d for d in shape if isinstance(d, int)]
        total = math.prod(statics)
        f = draw(st.sampled_from([f for f in range(1, total + 1) if total % f == 0]))
        target = draw(st.permutations([d for d in shape if isinstance(d, str)] + [f, -1]))
    return [shape], ["float32"], {"shape": target}, None


def _flatten(draw):
    shape = _shape(draw, _rank(draw, 1, 4))
    a, b = sorted(draw(st.integers(-len(shape), len(shape) - 1)) % len(shape) for _ in range(2))
    return [shape], ["float32"], {"start_dim": a, "end_dim": b}, None


def _unflatten(draw):
    shape = _shape(draw, _rank(draw, 1, 3))
    dim = draw(st.integers(0, len(shape) - 1))
    n = shape[dim]
    if isinstance(n, int):
        f = draw(st.sampled_from([f for f in range(1, n + 1) if n % f == 0]))
        sizes = draw(st.sampled_from(([f, n // f], [f, -1], [-1, f])))
    else:
        sizes = draw(st.sampled_from(([-1], [1, -1], [-1, 1])))
    return [shape], ["float32"], {"dim": dim, "unflattened_size": sizes}, None


def _split(draw):
    shape = list(_shape(draw, _rank(draw, 1, 3)))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    n = draw(st.integers(1, 9))
    shape[dim] = n
    how = draw(st.sampled_from(("chunks", "size", "sections")))
    if how == "chunks":
        args = {"chunks": draw(st.sampled_from([c for c in range(1, n + 1) if n % c == 0]))}
    elif how == "size":
        args = {"size": draw(st.integers(1, n))}
    else:
        cut = sorted(draw(st.sets(st.integers(1, n - 1), max_size=3))) if n > 1 else []
        args = {"sections": [b - a for a, b in zip([0] + cut, cut + [n])]}
    return [tuple(shape)], ["float32"], {**args, "dim": dim}, None


def _slice(draw):
    shape = _shape(draw, _rank(draw, 1, 3))
    bound = st.one_of(st.none(), st.integers(-6, 6))
    return [shape], ["float32"], {"dim": _dim_arg(draw, shape), "start": draw(bound), "end": draw(bound),
                                  "step": draw(st.integers(1, 3))}, None


def _select(draw):
    shape = _shape(draw, _rank(draw, 1, 3))
    return [shape], ["float32"], {"dim": _dim_arg(draw, shape), "index": draw(st.integers(-4, 4))}, None


def _reduce(draw):
    shape = _shape(draw, _rank(draw, 1, 3))
    dims = draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1),
                          st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True)))
    return [shape], ["float32"], {"dim": dims, "keepdim": draw(st.booleans())}, None


def _squeeze(draw):
    shape = list(_shape(draw, _rank(draw, 0, 3)))
    at = draw(st.integers(0, len(shape)))
    shape.insert(at, 1)
    return [tuple(shape)], ["float32"], {"dim": at - len(shape) if draw(st.booleans()) else at}, None


def _matmul(draw):
    n, k, m = _dim(draw), _dim(draw), _dim(draw)
    batch = _shape(draw, draw(st.integers(0, 2)))
    a = draw(st.sampled_from(((k,), batch + (n, k))))
    b = draw(st.sampled_from(((k,), batch[draw(st.integers(0, len(batch))):] + (k, m))))
    return [a, b], ["float32"] * 2, {}, None


def _bilinear(draw):
    lead = _shape(draw, _rank(draw, 0, 2))
    return ([lead + (draw(st.integers(1, 5)),), lead + (draw(st.integers(1, 5)),)], ["float32"] * 2,
            {"out_features": draw(st.integers(1, 4))}, None)


def _recurrent(kind):
    def case(draw):
        shape = (_dim(draw, 1, 3), _dim(draw, 1, 6), draw(st.integers(1, 4)))
        args = {"hidden_size": draw(st.integers(1, 5)), "num_layers": draw(st.integers(1, 2)),
                "bidirectional": draw(st.booleans())}
        return [shape], ["float32"], args, None
    return case


def _mha(draw):
    heads = draw(st.integers(1, 3))
    d = heads * draw(st.integers(1, 3))
    b, t, s = _dim(draw, 1, 3), _dim(draw), _dim(draw)
    if draw(st.booleans()):
        return [(b, t, d)], ["float32"], {"num_heads": heads}, None
    kd = draw(st.integers(1, 4))
    return ([(b, t, d), (b, s, kd), (b, s, draw(st.integers(1, 4)))], ["float32"] * 3,
            {"num_heads": heads}, ["query", "key", "value"])


def _attention(draw):
    heads = draw(st.integers(1, 3))
    b, t, s = _dim(draw, 1, 3), _dim(draw), _dim(draw)
    d, dv = heads * draw(st.integers(1, 3)), heads * draw(st.integers(1, 3))
    if draw(st.booleans()):
        return [(b, t, d)], ["float32"], {"heads": heads, "causal": draw(st.booleans())}, None
    return [(b, t, d), (b, s, d), (b, s, dv)], ["float32"] * 3, {"heads": heads}, None


def _pe(learned):
    def case(draw):
        shape = (_dim(draw, 1, 3), _dim(draw, 1, 8), draw(st.integers(1, 6)))
        args = {"max_len": draw(st.integers(1, 12))} if learned or draw(st.booleans()) else {}
        return [shape], ["float32"], args, None
    return case


def _conv_family():
    out = {}
    for nd in (1, 2):
        out[f"Conv{nd}d"] = _channels_case(nd, _conv_args(nd, False))
        out[f"ConvTranspose{nd}d"] = _channels_case(nd, _conv_args(nd, True))
        for kind in ("Max", "Avg"):
            out[f"{kind}Pool{nd}d"] = _channels_case(nd, _pool_args(nd, kind))
        out[f"AdaptiveAvgPool{nd}d"] = _channels_case(nd, _adaptive_args(nd))
    out["AdaptiveMaxPool2d"] = _channels_case(2, _adaptive_args(2))
    return out


_ACTIVATIONS = ("ReLU", "LeakyReLU", "ELU", "SiLU", "Sigmoid", "Tanh", "Softplus", "Dropout", "Identity",
                "Hardtanh", "Mish", "Tanhshrink", "Softsign", "ReLU6", "SELU", "CELU")

OP_CASES = {
    **{name: _single() for name in _ACTIVATIONS},
    **_conv_family(),
    "GELU": _single(lambda draw, s: {"approximate": draw(st.sampled_from(("none", "tanh")))}),
    "PReLU": _single(lambda draw, s: {"num_parameters": draw(st.sampled_from((1, s[1])))
                                      if len(s) > 1 and isinstance(s[1], int) else 1}),
    "Softmax": _single(lambda draw, s: {"dim": _dim_arg(draw, s)}),
    "LogSoftmax": _single(lambda draw, s: {"dim": _dim_arg(draw, s)}),
    "Linear": _single(lambda draw, s: {"out_features": draw(st.integers(1, 6)), "bias": draw(st.booleans())},
                      static_last=True),
    "RBF": _single(lambda draw, s: {"out_features": draw(st.integers(1, 6))}, static_last=True),
    "LayerNorm": _single(lambda draw, s: {}, static_last=True),
    "Embedding": _single(lambda draw, s: {"num_embeddings": draw(st.integers(1, 9)),
                                          "embedding_dim": draw(st.integers(1, 5))}, lo=1, hi=3, dtype="int64"),
    "BatchNorm1d": _channels_case(1, lambda draw, c: {}, unbatched_ok=False),
    "BatchNorm2d": _channels_case(2, lambda draw, c: {}, unbatched_ok=False),
    # at least 2 channels per group: torch refuses a group of one value (statistics, not shapes)
    "GroupNorm": _channels_case(2, lambda draw, c: {"num_groups": draw(st.sampled_from(
        [g for g in (1, 2, 3) if c % g == 0 and c // g >= 2]))}, unbatched_ok=False, channels=(2, 4, 6)),
    "Bilinear": _bilinear,
    "Flatten": _flatten,
    "Unflatten": _unflatten,
    "add": _elementwise(3), "mul": _elementwise(3), "sub": _elementwise(2), "div": _elementwise(2),
    "scale": _single(lambda draw, s: {"factor": draw(st.sampled_from((0.5, 2, -1.0)))}),
    "matmul": _matmul,
    "concat": _join(False), "stack": _join(True),
    "reshape": _reshape,
    "permute": _single(lambda draw, s: {"dims": draw(st.permutations(range(len(s))))}),
    "transpose": _single(lambda draw, s: {"dim0": _dim_arg(draw, s), "dim1": _dim_arg(draw, s)}),
    "split": _split, "slice": _slice, "select": _select,
    "mean": _reduce, "sum": _reduce,
    "unsqueeze": _single(lambda draw, s: {"dim": draw(st.integers(-len(s) - 1, len(s)))}, lo=0),
    "squeeze": _squeeze,
    "RNN": _recurrent("RNN"), "LSTM": _recurrent("LSTM"), "GRU": _recurrent("GRU"),
    "MultiheadAttention": _mha, "attention": _attention,
    "sinusoidal_pe": _pe(False), "learned_pe": _pe(True),
}


# ---- issue 13's ops ----------------------------------------------------------------------------

def _compare_case(draw):
    if draw(st.booleans()):
        return [_shape(draw, _rank(draw, 1, 4))], ["float32"], {"value": draw(st.sampled_from((0, 0.5, -1)))}, None
    shapes, dtypes, _, _ = _elementwise(2)(draw)
    return shapes, dtypes, {}, None


def _logical(n):
    def case(draw):
        shapes = _elementwise(2)(draw)[0][:n] if n == 2 else [_shape(draw, _rank(draw, 1, 4))]
        return shapes, ["bool"] * n, {}, None
    return case


def _where(draw):
    shapes = _elementwise(3)(draw)[0]
    while len(shapes) < 3:
        shapes.append(shapes[-1])
    return shapes[:3], ["bool", "float32", "float32"], {}, ["cond", "a", "b"]


def _masked_fill(draw):
    x = _shape(draw, _rank(draw, 1, 4))
    mask = tuple(1 if draw(st.booleans()) else d for d in x)
    mask = mask[draw(st.integers(0, len(mask) - 1)):]
    return [x, mask], ["float32", "bool"], {"value": -1.0}, ["x", "mask"]


def _norm(draw):
    shapes, dtypes, args, _ = _reduce(draw)
    return shapes, dtypes, {**args, "p": draw(st.sampled_from((1, 2, 3.0, "inf")))}, None


def _extreme(draw):
    shape = _shape(draw, _rank(draw, 1, 3))
    if draw(st.booleans()):
        return [shape], ["float32"], {}, None
    return [shape], ["float32"], {"dim": _dim_arg(draw, shape), "keepdim": draw(st.booleans())}, None


def _gather(draw):
    x = _shape(draw, _rank(draw, 1, 3))
    dim = _dim_arg(draw, x)
    index = tuple(draw(st.integers(1, 4)) if i == dim % len(x) else d for i, d in enumerate(x))
    return [x, index], ["float32", "int64"], {"dim": dim}, ["x", "index"]


def _upsample(draw):
    nd = draw(st.integers(1, 3))
    shape = (_dim(draw, 1, 3), draw(st.integers(1, 4))) + tuple(_dim(draw, 1, 9) for _ in range(nd))
    mode = draw(st.sampled_from(("nearest", {1: "linear", 2: "bilinear", 3: "trilinear"}[nd])))
    if draw(st.booleans()):
        return [shape], ["float32"], {"size": draw(st.integers(1, 12)), "mode": mode}, None
    return [shape], ["float32"], {"scale_factor": draw(st.sampled_from((1, 2, 3))), "mode": mode}, None


def _pixel_shuffle(draw):
    r = draw(st.integers(1, 3))
    return ([(_dim(draw, 1, 3), r * r * draw(st.integers(1, 3)), _dim(draw), _dim(draw))], ["float32"],
            {"upscale_factor": r}, None)


def _pairwise(draw):
    shapes = _elementwise(2)(draw)[0]
    return shapes, ["float32"] * 2, {"keepdim": draw(st.booleans())}, None


def _cosine(draw):
    base = _shape(draw, _rank(draw, 1, 3))
    return [base, base], ["float32"] * 2, {"dim": _dim_arg(draw, base)}, None


def _sequence_mask(draw):
    b = _dim(draw, 1, 4)
    if draw(st.booleans()):
        return [(b,)], ["int64"], {"max_len": draw(st.integers(1, 9))}, None
    return [(b,), (b, _dim(draw), 3)], ["int64", "float32"], {}, ["lengths", "like"]


def _last_valid(draw):
    x = (_dim(draw, 1, 4), _dim(draw, 1, 6)) + _shape(draw, draw(st.integers(0, 2)))
    return [x, (x[0],)], ["float32", "int64"], {}, ["x", "lengths"]


def _instance_norm(draw):
    """Static spatial sizes with more than one element: torch refuses a single one at run time."""
    h, w = draw(st.integers(1, 6)), draw(st.integers(2, 6))
    lead = (_dim(draw, 1, 3),) if draw(st.booleans()) else ()
    return [lead + (draw(st.integers(1, 4)), h, w)], ["float32"], {"affine": draw(st.booleans())}, None


def _param(draw):
    return [], [], {"shape": [draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 3)))]}, None


def _expand(draw):
    x = _shape(draw, _rank(draw, 1, 3))
    small = tuple(1 if draw(st.booleans()) else d for d in x)
    target = [d if s == 1 and draw(st.booleans()) else -1 for s, d in zip(small, x)]
    return [small, x], ["float32"] * 2, {"shape": target}, None


OP_CASES.update({
    **{name: _single() for name in ("exp", "log", "sqrt", "rsqrt", "abs", "neg", "randn_like", "rand_like")},
    "pow": _single(lambda draw, s: {"exponent": draw(st.sampled_from((2, 0.5, -1)))}),
    "clamp": _single(lambda draw, s: draw(st.sampled_from(({"min": 0}, {"max": 1.0}, {"min": -1, "max": 1})))),
    **{name: _compare_case for name in ("eq", "ne", "lt", "le", "gt", "ge")},
    "logical_and": _logical(2), "logical_or": _logical(2), "logical_not": _logical(1),
    "where": _where, "masked_fill": _masked_fill,
    "cast": _single(lambda draw, s: {"dtype": draw(st.sampled_from(("float64", "int64", "bool")))}),
    "norm": _norm, "max": _extreme, "min": _extreme,
    "argmax": _single(lambda draw, s: {"dim": _dim_arg(draw, s), "keepdim": draw(st.booleans())}),
    "cumsum": _single(lambda draw, s: {"dim": _dim_arg(draw, s)}),
    "gather": _gather,
    "Conv3d": _channels_case(3, _conv_args(3, False)),
    "MaxPool3d": _channels_case(3, _pool_args(3, "Max")),
    "BatchNorm3d": _channels_case(3, lambda draw, c: {}, unbatched_ok=False),
    "InstanceNorm2d": _instance_norm,
    "ZeroPad2d": _channels_case(2, lambda draw, c: {"padding": draw(st.sampled_from(
        (1, [0, 1, 2, 3], [2, 0, 0, 1])))}),
    "Upsample": _upsample, "PixelShuffle": _pixel_shuffle,
    "PairwiseDistance": _pairwise, "CosineSimilarity": _cosine,
    "sequence_mask": _sequence_mask, "last_valid": _last_valid,
    "param": _param, "expand": _expand,
})
OP_CASES = with_llm_variants(OP_CASES)


# ---- issue 22's vision ops ----------------------------------------------------------------------

def _roll(draw):
    shape = _shape(draw, _rank(draw, 1, 4))
    if draw(st.booleans()):
        return [shape], ["float32"], {"shifts": draw(st.integers(-5, 5))}, None
    dims = draw(st.lists(st.integers(-len(shape), len(shape) - 1), min_size=1, max_size=len(shape), unique=True))
    return [shape], ["float32"], {"shifts": [draw(st.integers(-5, 5)) for _ in dims], "dims": dims}, None


def _window_map(draw, static=False, lo=1):
    """[B, H, W, C] with H, W whole numbers of windows (or symbolic: the rule must then refuse or prove it)."""
    wh, ww = draw(st.integers(lo, 3)), draw(st.integers(lo, 3))
    b = _dim(draw, 1, 3)
    h = wh * draw(st.integers(1, 3)) if static or draw(st.booleans()) else "H"
    w = ww * draw(st.integers(1, 3)) if static or draw(st.booleans()) else "W"
    window = wh if wh == ww and draw(st.booleans()) else [wh, ww]
    return (b, h, w, draw(st.integers(1, 4))), window, (wh, ww)


def _window_partition(draw):
    shape, window, _ = _window_map(draw)
    return [shape], ["float32"], {"window": window}, None


def _window_reverse(draw):
    (b, h, w, c), window, (wh, ww) = _window_map(draw, static=True)
    n = S.mul(b, (h // wh) * (w // ww))
    return ([(n, wh * ww, draw(st.integers(1, 4))), (b, h, w, c)], ["float32"] * 2, {"window": window},
            ["windows", "like"])


def _shift_mask(draw):
    shape, window, (wh, ww) = _window_map(draw, static=True, lo=2)
    return [shape], ["float32"], {"window": window, "shift": [draw(st.integers(1, wh - 1)),
                                                           draw(st.integers(1, ww - 1))]}, None


OP_CASES.update({
    "DropPath": _single(lambda draw, s: {"p": draw(st.sampled_from((0.0, 0.1, 0.5))),
                                         "mode": draw(st.sampled_from(("row", "batch")))}),
    "roll": _roll,
    "LayerNorm2d": _channels_case(2, lambda draw, c: {"eps": 1e-6}, unbatched_ok=False),
    "window_partition": _window_partition, "window_reverse": _window_reverse,
    "relative_position_bias": lambda draw: ([], [], {"window": draw(st.one_of(
        st.integers(1, 7), st.lists(st.integers(1, 7), min_size=2, max_size=2))), "heads": draw(st.integers(1, 8))},
        None),
    "shift_mask": _shift_mask,
})


def registry_ops() -> list[str]:
    """Every op of the registry once (aliases share their OpDef)."""
    seen, out = set(), []
    for name in ops_pkg.names():
        op = ops_pkg.get(name)
        if id(op) not in seen:
            seen.add(id(op))
            out.append(op.name)
    return out


def _sizes(draw, env: dimenv.DimEnv, names) -> dict:
    out = {}
    for n in sorted(names):
        lo, hi = env.lowest(n), env.highest(n)
        top = lo + 12 if hi is None else min(hi, lo + 12)
        m = env.decl(n).multiple_of
        out[n] = draw(st.sampled_from(range(lo, top + 1, m)))
    return out


def _tensor(shape, dtype):
    if dtype == "bool":
        return torch.zeros(shape, dtype=torch.bool, device="meta")
    if dtype == "int64":
        return torch.zeros(shape, dtype=torch.int64, device="meta")
    return torch.empty(shape, device="meta")


def check_op_case(draw, name: str) -> bool:
    """Infer, build and compare one random call of `name`; False when the shape rule rejected it."""
    op = ops_pkg.get(name)
    shapes, dtypes, args, slots = OP_CASES[name](draw)
    env = dimenv.DimEnv()
    ctx = InferContext([tuple(s) for s in shapes], dtypes, dict(args), slots)
    with dimenv.active(env):
        try:
            out = op.infer(ctx)
            if not isinstance(out, dict):
                out = {op.port_names(ctx.args)[0]: tuple(out)}
            for shape in out.values():
                for d in shape:
                    S.require(d, 1, "output size")
        except S.ShapeError:
            return False
    names = {n for s in shapes for d in s if isinstance(d, str) for n in dimexpr.names(d)}
    sizes = _sizes(draw, env, names)
    concrete = [S.concrete(s, sizes) for s in shapes]
    with meta_device():
        module = op.build(ctx.args)
    module.eval()
    with torch.no_grad():
        real = module(*[_tensor(s, dt) for s, dt in zip(concrete, dtypes)])
    real = real if isinstance(real, (tuple, list)) else (real,)
    want = {p: S.concrete(s, sizes) for p, s in out.items()}
    got = {p: tuple(t.shape) for p, t in zip(op.port_names(ctx.args), real)}
    assert got == want, (f"{name} {args} on {shapes} at {sizes}: inferred {out} -> {want}, "
                         f"torch gives {got}")
    return True


# ---- chains ------------------------------------------------------------------------------------

def _chain_op(draw, rank: int, name: str, prev: str):
    """One node (its YAML text) that reads `prev`, and the rank it leaves."""
    if rank in (3, 4):
        nd = rank - 2
        kind = draw(st.sampled_from(("conv", "conv", "pool", "tconv", "reshape", "flatten", "concat",
                                     "split", "slice")))
        if kind == "conv":
            k, s = draw(st.integers(1, 7)), draw(st.integers(1, 3))
            return (f"{{op: Conv{nd}d, in: {prev}, out_channels: {draw(st.integers(1, 4))}, kernel_size: {k}, "
                    f"stride: {s}, padding: {draw(st.integers(0, 3))}, dilation: {draw(st.integers(1, 2))}}}"), rank
        if kind == "pool":
            k = draw(st.integers(1, 3))
            p = draw(st.integers(0, k // 2))
            op = draw(st.sampled_from(("MaxPool", "AvgPool")))
            return (f"{{op: {op}{nd}d, in: {prev}, kernel_size: {k}, stride: {draw(st.integers(1, 3))}, "
                    f"padding: {p}, ceil_mode: {str(draw(st.booleans())).lower()}}}"), rank
        if kind == "tconv":
            s, k = draw(st.integers(1, 3)), draw(st.integers(1, 4))
            return (f"{{op: ConvTranspose{nd}d, in: {prev}, out_channels: {draw(st.integers(1, 4))}, "
                    f"kernel_size: {k}, stride: {s}, padding: {draw(st.integers(0, 1))}, "
                    f"output_padding: {draw(st.integers(0, s - 1))}}}"), rank
        if kind == "reshape":
            return draw(st.sampled_from(((f"{{op: reshape, in: {prev}, shape: [B, -1]}}", 2),
                                         (f"{{op: reshape, in: {prev}, shape: [0, 0, -1]}}", 3)))) if rank == 4 \
                else (f"{{op: reshape, in: {prev}, shape: [B, -1]}}", 2)
        if kind == "flatten":
            return f"{{op: Flatten, in: {prev}, start_dim: {draw(st.integers(1, rank - 2))}}}", rank - 1
        if kind == "concat":
            return f"{{op: concat, in: [{prev}, {prev}], dim: {draw(st.integers(1, rank - 1))}}}", rank
        if kind == "split":
            return f"{{op: split, in: {prev}, dim: 1, sections: [1, 1]}}", -rank  # needs 2 channels: see below
        return f"{{op: slice, in: {prev}, dim: {draw(st.integers(2, rank - 1))}, start: 1}}", rank
    kind = draw(st.sampled_from(("slice", "concat")))
    if kind == "slice":
        return f"{{op: slice, in: {prev}, dim: 1, start: {draw(st.integers(0, 2))}, step: 2}}", rank
    return f"{{op: concat, in: [{prev}, {prev}], dim: 1}}", rank


def chain_spec(draw) -> str:
    """A spec of 2-6 shape-changing ops on [B, 2, H, W] or [B, 2, L] whose nodes are all outputs."""
    rank = draw(st.sampled_from((3, 4)))
    shape = "[B, 2, H, W]" if rank == 4 else "[B, 2, H]"
    lines, prev = [], "x"
    for i in range(draw(st.integers(2, 6))):
        text, new_rank = _chain_op(draw, rank, f"n{i}", prev)
        if new_rank < 0:  # split: make 2 channels first, take one port
            lines.append(f"  n{i}c: {{op: Conv{rank - 2}d, in: {prev}, out_channels: 2, kernel_size: 1}}")
            text = text.replace(f"in: {prev}", f"in: n{i}c")
            lines.append(f"  n{i}: {text}")
            prev, rank = f"n{i}.0", -new_rank
            continue
        lines.append(f"  n{i}: {text}")
        prev, rank = f"n{i}", new_rank
    names = [ln.split(":")[0].strip() for ln in lines]
    return (f"spec: 1\nname: chain\ninputs:\n  x: {{shape: {shape}}}\nnodes:\n" + "\n".join(lines)
            + f"\noutputs: [{', '.join(n for n in names)}]\n")


def check_chain(draw, text: str) -> bool:
    """`build summary --json` shapes at random allowed sizes == the built module's real outputs."""
    import builder
    from builder.spec.summary import summarize
    try:
        spec = builder.load(text)
    except builder.SpecError:
        return False
    data = json.loads(json.dumps(summarize(spec)))
    env = dimenv.DimEnv({n: dimenv.DimDecl(n, v["min"], v["max"], v["multiple_of"]) for n, v in data["dims"].items()})
    names = {n for r in data["nodes"] for d in r["output_shape"] if isinstance(d, str) for n in dimexpr.names(d)}
    sizes = _sizes(draw, env, names | {"B"})
    module = builder.build(spec, device="meta")
    x_shape = S.concrete(spec.network().inputs[0].shape, sizes)
    with torch.no_grad():
        outs = module(torch.empty(x_shape, device="meta"))
    outs = outs if isinstance(outs, tuple) else (outs,)
    rows = {r["path"]: r["output_shape"] for r in data["nodes"]}
    graph = spec.network().graph
    for (_, node, port), t in zip(graph.graph["outputs"], outs):
        assert port == record(graph, node).ports[0]
        shape = rows[node]
        want = tuple(dimexpr.evaluate(d, sizes) if isinstance(d, str) else d for d in shape)
        assert tuple(t.shape) == want, f"{node}: {shape} at {sizes} is {want}, torch gives {tuple(t.shape)}\n{text}"
    return True
