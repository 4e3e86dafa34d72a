"""Random cases of issue 22's language-model ops for the shape property tests (merged into
shape_cases.OP_CASES). Same contract: a draw -> (input shapes, dtypes, args, slots)."""
from __future__ import annotations

from hypothesis import strategies as st


def _dim(draw, lo=1, hi=9):
    return draw(st.sampled_from(("B", "T"))) if draw(st.booleans()) else draw(st.integers(lo, hi))


def _lead(draw, n):
    return tuple(_dim(draw) for _ in range(n))


def _rmsnorm(draw):
    trailing = tuple(draw(st.integers(1, 6)) for _ in range(draw(st.integers(1, 2))))
    shape = _lead(draw, draw(st.integers(0, 2))) + trailing
    k = draw(st.integers(1, len(shape)))
    args = {"eps": draw(st.sampled_from((None, 1e-6, 1e-5)))}
    if draw(st.booleans()):
        args["normalized_shape"] = list(shape[-k:])
    return [shape], ["float32"], {**args, "elementwise_affine": draw(st.booleans())}, None


def _rope_args(draw):
    return {"theta": draw(st.sampled_from((10000.0, 500000, 100))), "fraction": draw(st.sampled_from((1.0, 0.5, 0.25))),
            "interleaved": draw(st.booleans())}


def _rope(draw):
    heads, head_dim = draw(st.integers(1, 3)), draw(st.sampled_from((2, 4, 6, 8)))
    b, t = _dim(draw, 1, 3), _dim(draw)
    if draw(st.booleans()):
        return [(b, t, heads, head_dim)], ["float32"], _rope_args(draw), None
    return [(b, t, heads * head_dim)], ["float32"], {"heads": heads, **_rope_args(draw)}, None


def _gqa_attention(draw):
    kv = draw(st.integers(1, 3))
    heads = kv * draw(st.integers(1, 3))
    hd = draw(st.sampled_from((2, 4)))
    b, t = _dim(draw, 1, 3), _dim(draw)
    s = t if draw(st.booleans()) else _dim(draw)
    shapes = [(b, t, heads * hd), (b, s, kv * hd), (b, s, kv * draw(st.integers(1, 3)))]
    slots = ["q", "k", "v"]
    args = {"heads": heads, "kv_heads": kv, "causal": draw(st.booleans())}
    if draw(st.booleans()):
        args["rope"] = _rope_args(draw)
    if draw(st.booleans()):
        bias = draw(st.sampled_from(((heads, t, s), (b, heads, t, s), (1, 1, t, s), (t, s), (b, 1, 1, s))))
        shapes.append(bias)
        slots.append("bias")
    return shapes, ["float32"] * len(shapes), args, slots


def _halves(draw):
    shape = list(_lead(draw, draw(st.integers(0, 3))))
    shape.insert(draw(st.integers(0, len(shape))), 2 * draw(st.integers(1, 4)))
    dim = shape.index(next(d for d in shape if isinstance(d, int) and d % 2 == 0))
    return shape, dim


def _glu(draw):
    shape, dim = _halves(draw)
    return [tuple(shape)], ["float32"], {"dim": dim - len(shape) if draw(st.booleans()) else dim}, None


def _swiglu(draw):
    shape, dim = _halves(draw)
    if draw(st.booleans()):
        shape[-1] = 2 * draw(st.integers(1, 4))
        return [tuple(shape)], ["float32"], {}, None
    return [tuple(shape), tuple(shape)], ["float32"] * 2, {}, ["gate", "up"]


def _arange(draw):
    start, step = draw(st.integers(0, 3)), draw(st.integers(1, 3))
    if draw(st.booleans()):
        return [], [], {"end": draw(st.integers(start + 1, 12)), "start": start, "step": step,
                        "dtype": draw(st.sampled_from(("int64", "float32")))}, None
    x = (_dim(draw, 1, 3), "T", draw(st.integers(1, 4)))
    return [x], ["float32"], {"end": "T", "start": start, "step": step}, None


def _alibi(draw):
    return [(_dim(draw, 1, 3), _dim(draw), draw(st.integers(1, 4)))], ["float32"], \
        {"heads": draw(st.integers(1, 12))}, None


def _scalar(_):
    def case(draw):
        shape = tuple(_dim(draw) for _ in range(draw(st.integers(1, 3))))
        return [shape], ["float32"], {"value": draw(st.sampled_from((1, -0.5, 2.0)))}, None
    return case


LLM_CASES = {
    "RMSNorm": _rmsnorm, "rope": _rope, "GLU": _glu, "swiglu": _swiglu, "arange": _arange, "alibi": _alibi,
    "QuickGELU": lambda draw: ([tuple(_dim(draw) for _ in range(draw(st.integers(1, 3))))], ["float32"], {}, None),
}


def _either(old, new):
    return lambda draw: new(draw) if draw(st.booleans()) else old(draw)


def with_llm_variants(cases: dict) -> dict:
    """`cases` plus issue 22's ops, with grouped-query/rope/bias attention and scalar arithmetic drawn
    half of the time in place of the older cases of those ops."""
    out = {**cases, **LLM_CASES, "attention": _either(cases["attention"], _gqa_attention)}
    for name in ("add", "mul", "sub", "div"):
        out[name] = _either(cases[name], _scalar(1))
    return out
