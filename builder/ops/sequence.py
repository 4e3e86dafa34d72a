"""Sequence ops: recurrent layers with output ports, attention, positional encodings."""
from __future__ import annotations

from builder.shapes import rules as S
from builder.shapes.rules import ShapeError
from builder.ops import modules as M
from builder.ops.registry import OpDef, public_args, register
from builder.ops.rotary import ROPE_SCHEMA, rope_check

MAX_LAYERS = 1000  # torch builds every layer's tensors even on the meta device: absurd counts must fail fast
_RNN_ARGS = ("hidden_size", "num_layers", "nonlinearity", "bias", "dropout", "bidirectional", "input_size",
             "batch_first", "proj_size")


def _recurrent(kind):
    def infer(ctx):
        if ctx.slots:  # named state slots: in: {x: a, h: enc.h, c: enc.c}, in any order
            named = dict(zip(ctx.slots, ctx.shapes))
            if kind == "LSTM" and ("h" in named) != ("c" in named):
                raise ShapeError("an LSTM's initial state needs both `h` and `c`")
            order = [ctx.slots.index(s) for s in ("x", "h", "c") if s in named]
            ctx.shapes = [ctx.shapes[i] for i in order]
            ctx.args["_order"] = order if order != list(range(len(order))) else None
        x = ctx.shapes[0]
        if len(x) != 3:
            raise ShapeError(f"{kind} expects [B, T, features], got {S.fmt(x)}")
        if ctx.args.get("batch_first", True) is not True:
            raise ShapeError("batch_first must be true: specs are batch-first throughout")
        ctx.args["input_size"] = x[2]
        ctx.args["batch_first"] = True
        h = ctx.args["hidden_size"]
        layers = ctx.args.get("num_layers", 1)
        if not isinstance(layers, int) or isinstance(layers, bool) or not 1 <= layers <= MAX_LAYERS:
            raise ShapeError(f"num_layers must be an integer from 1 to {MAX_LAYERS}, got {layers!r}")
        dirs = 2 if ctx.args.get("bidirectional", False) else 1
        state = (layers * dirs, x[0], h)
        for extra in ctx.shapes[1:]:
            if not S.same_shape(extra, state):
                raise ShapeError(f"initial state must be {S.fmt(state)}, got {S.fmt(extra)}")
        out = {"output": (x[0], x[1], h * dirs), "h": state}
        if kind == "LSTM":
            out["c"] = state
        return out

    def macs(ctx, out):
        """Per step, direction and layer: the gates' input and hidden products (and an LSTM's projection);
        a layer after the first reads the previous layer's output, both directions of it."""
        gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[kind]
        b, t, f = S.concrete(ctx.shapes[0])
        h = ctx.args["hidden_size"]
        r = ctx.args.get("proj_size") or h  # the hidden state's size (an LSTM's projection)
        dirs = 2 if ctx.args.get("bidirectional", False) else 1
        total = 0
        for layer in range(ctx.args.get("num_layers", 1)):
            width = f if layer == 0 else r * dirs
            total += dirs * (gates * h * (width + r) + (h * r if r != h else 0))
        return b * t * total

    args = _RNN_ARGS if kind == "RNN" else tuple(a for a in _RNN_ARGS if a != "nonlinearity")
    register(OpDef(kind, infer, build=lambda a: M.Recurrent(kind, order=a.get("_order"), **public_args(a)),
                   arg_names=args, required=("hidden_size",), inferred=("input_size",),
                   slots=("x", "h", "c") if kind == "LSTM" else ("x", "h"), required_slots=("x",),
                   ports=("output", "h", "c") if kind == "LSTM" else ("output", "h"),
                   arity=(1, 3 if kind == "LSTM" else 2), macs=macs, category="recurrent",
                   doc=("torch's recurrent layer, batch first (hidden_size, num_layers, bidirectional, dropout; "
                        'nonlinearity for RNN): ports output and the final state; initial state through in: {x, h[, '
                        'c]}; parameters one level down (node.rnn.weight_ih_l0)'),
                   shape_doc='x [B, T, F] -> output [B, T, H * directions]; h (and c) [layers * directions, B, H]',
                   onnx='RNN exports as a native ONNX RNN with a dynamic length; LSTM and GRU through torch.onnx'))


for _kind in ("RNN", "LSTM", "GRU"):
    _recurrent(_kind)


def _mha(ctx):
    slots = ctx.slots or ["query"]
    named = dict(zip(slots, ctx.shapes))
    q = named["query"]
    k = named.get("key", q)
    v = named.get("value", k)
    if len(q) != 3:
        raise ShapeError(f"MultiheadAttention expects [B, T, D] inputs, got {S.fmt(q)}")
    d = q[2]
    ctx.args["embed_dim"] = d
    if not S.same(k[2], d):
        ctx.args["kdim"] = k[2]
    if not S.same(v[2], d):
        ctx.args["vdim"] = v[2]
    if not S.same_shape(k[:2], v[:2]):
        raise ShapeError(f"key {S.fmt(k)} and value {S.fmt(v)} differ in batch or length")
    heads = ctx.args["num_heads"]
    if not isinstance(ctx.args.get("causal", False), bool):
        raise ShapeError(f"causal must be true or false, got {ctx.args['causal']!r}")
    if not S.is_static(heads) or heads < 1:
        raise ShapeError(f"num_heads must be a positive integer, got {heads!r}")
    if d % heads:
        raise ShapeError(f"embed_dim {d} is not divisible by num_heads {heads}")
    if "key_padding_mask" in named and not S.same_shape(named["key_padding_mask"], k[:2]):
        raise ShapeError(f"key_padding_mask must be {S.fmt(k[:2])}, got {S.fmt(named['key_padding_mask'])}")
    ctx.args["slots"] = tuple(slots)
    return q


def _mha_macs(ctx, out):
    """Projections of query (t x d), key (s x kdim), value (s x vdim) and output, and the two products of
    attention (scores t x s, weighted values), over the key length with any added bias or zero key."""
    slots = list(ctx.args.get("slots") or ["query"])
    named = dict(zip(slots, (S.concrete(s) for s in ctx.shapes)))
    b, t, d = named["query"]
    _, s, kdim = named.get("key", named["query"])
    vdim = named.get("value", named.get("key", named["query"]))[2]
    keys = s + int(bool(ctx.args.get("add_bias_kv"))) + int(bool(ctx.args.get("add_zero_attn")))
    return b * (2 * t * d * d + s * (kdim + vdim) * d + 2 * t * keys * d)


register(OpDef("MultiheadAttention", _mha, build=lambda a: M.MultiheadAttention(**a),
               arg_names=("num_heads", "dropout", "bias", "add_bias_kv", "add_zero_attn", "causal",
                          "embed_dim", "kdim", "vdim"),
               required=("num_heads",), inferred=("embed_dim", "kdim", "vdim"),
               slots=("query", "key", "value", "key_padding_mask"), required_slots=("query",),
               arity=(1, 4), in_dtype=None, macs=_mha_macs, category="attention",
               doc=('nn.MultiheadAttention, batch first (num_heads, dropout, bias, causal): in: x or {query, key, '
                    'value, key_padding_mask}; parameters one level down (node.attn.in_proj_weight)'),
               shape_doc='query [B, T, E] (key/value [B, S, E]) -> [B, T, E]; embed_dim, kdim, vdim inferred'))


def _attention(ctx):
    slots = ctx.slots or ["q", "k", "v"][: len(ctx.shapes)]
    named = dict(zip(slots, ctx.shapes))
    q = named["q"]
    k = named.get("k", q)
    v = named.get("v", k)
    for name, s in (("q", q), ("k", k), ("v", v)):
        if len(s) != 3:
            raise ShapeError(f"attention expects [B, T, D] for {name}, got {S.fmt(s)}")
    heads = ctx.args.get("heads", 1)
    if not isinstance(ctx.args.get("causal", False), bool):
        raise ShapeError(f"causal must be true or false, got {ctx.args['causal']!r}")
    if not S.is_static(heads) or heads < 1:
        raise ShapeError(f"heads must be a positive integer, got {heads!r}")
    kv_heads = ctx.args.get("kv_heads") or heads
    if not S.is_static(kv_heads) or kv_heads < 1 or heads % kv_heads:
        raise ShapeError(f"kv_heads must be a positive integer dividing heads={heads}, got {kv_heads!r}")
    if S.is_static(q[2]) and q[2] % heads:
        raise ShapeError(f"q dim {q[2]} is not divisible by heads={heads}")
    head_dim = q[2] // heads if S.is_static(q[2]) else None
    if head_dim is None and (kv_heads != heads or ctx.args.get("rope") is not None):
        raise ShapeError(f"kv_heads and rope need a static query feature dim, got {S.fmt(q)}")
    if not S.same(k[2], q[2] if head_dim is None else head_dim * kv_heads):
        raise ShapeError(f"key {S.fmt(k)} must have kv_heads * head_dim = {kv_heads} * {head_dim} features "
                         f"(query {S.fmt(q)}, heads={heads})")
    if not S.same(k[1], v[1]):
        raise ShapeError(f"key {S.fmt(k)} and value {S.fmt(v)} must have the same length")
    if S.is_static(v[2]) and v[2] % kv_heads:
        raise ShapeError(f"v dim {v[2]} is not divisible by kv_heads={kv_heads}")
    if "mask" in named and not S.same_shape(named["mask"], (k[0], k[1])):
        raise ShapeError(f"mask must be {S.fmt((k[0], k[1]))} (1 = attend, 0 = padding), got {S.fmt(named['mask'])}")
    if "bias" in named:
        full = (q[0], heads, q[1], k[1])
        bias = named["bias"]
        if len(bias) > 4 or S.broadcast([bias, full], "add the attention bias to the scores") != full:
            raise ShapeError(f"bias {S.fmt(bias)} must broadcast to the scores [B, heads, T, S] = {S.fmt(full)}")
    rope = ctx.args.get("rope")
    if rope is not None:
        rope_check(rope, head_dim)
    ctx.args["slots"] = tuple(slots)
    ctx.args["head_dim"] = head_dim
    ctx.args["_paired"] = S.same(q[1], k[1])
    out_dim = v[2] // kv_heads * heads if S.is_static(v[2]) else v[2]
    return (q[0], q[1], out_dim)


def _attention_macs(ctx, out) -> int:
    """Scores (t x s, over d) and weighted values (t x dv, over s; dv the output's features, every query
    head's share of the grouped values): causal masks are applied to the full product, so they do not
    change the count."""
    slots = list(ctx.args.get("slots") or ["q", "k", "v"])
    named = dict(zip(slots, (S.concrete(s) for s in ctx.shapes)))
    b, t, d = named["q"]
    s = named.get("k", named["q"])[1]
    dv = S.concrete(next(iter(out.values())))[-1]
    return b * t * s * (d + dv)


register(OpDef("attention", _attention, build=lambda a: M.Attention(**public_args(a), paired=a.get("_paired", False)),
               arg_names=("heads", "causal", "dropout", "scale", "kv_heads", "rope", "head_dim"),
               slots=("q", "k", "v", "mask", "bias"), inferred=("head_dim",),
               required_slots=("q",), arity=(1, 5), in_dtype=None, category="attention",
               aliases=("scaled_dot_product_attention",), macs=_attention_macs,
               arg_schema={"rope": ROPE_SCHEMA, "kv_heads": {
                   "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"\$\{.*\}"}],
                   "description": "key/value heads, dividing heads (grouped-query; 1: multi-query)"}},
               doc="multi-head scaled dot-product attention (no projections): causal, padding `mask`, additive "
                   "`bias`, grouped-query `kv_heads`, rotary `rope: {theta, fraction, interleaved}`",
               shape_doc="q [B, T, D], k and v [B, S, D_kv] (D divisible by `heads`, D_kv = D / heads * kv_heads), "
                         "mask [B, S], bias broadcasting to [B, heads, T, S] -> [B, T, D]"))


def _pe(ctx):
    x = ctx.shapes[0]
    if len(x) != 3:
        raise ShapeError(f"positional encodings expect [B, T, D], got {S.fmt(x)}")
    ctx.args["dim"] = x[2]
    S.require_at_most(x[1], ctx.args.get("max_len", 5000), "the sequence length")
    return x


register(OpDef("sinusoidal_pe", _pe, build=lambda a: M.SinusoidalPE(**a),
               arg_names=("max_len", "base", "scale", "dim"), inferred=("dim",), category="position",
               aliases=("PositionalEncoding",),
               doc="adds the notes' sinusoidal position table P[i,2j]=sin(i/10000^(2j/d)), P[i,2j+1]=cos(...)",
               shape_doc='[B, T, D] -> [B, T, D]; T at most `max_len`'))
register(OpDef("learned_pe", _pe, build=lambda a: M.LearnedPositions(**a), arg_names=("max_len", "dim"),
               required=("max_len",), inferred=("dim",), category="position", aliases=("positions",),
               doc="adds learned position embeddings weight[:T] (GPT-2 wpe, BERT position_embeddings)",
               shape_doc='[B, T, D] -> [B, T, D]; T at most `max_len`'))
