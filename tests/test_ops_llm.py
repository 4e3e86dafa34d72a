"""Issue 22's language-model ops against independent references: torch.nn.RMSNorm, Hugging Face's rotary
embedding (half-split), Meta's complex-number rotary (interleaved), explicit key/value head repetition
for grouped-query attention, a hand-written softmax for the additive bias, ALiBi's published slopes; then
one spec with all of them through a verified ONNX export."""
import math

import pytest
import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

import builder
from builder.core.errors import SpecError
from builder.ops.llm import alibi_slopes
from builder.ops.rotary import RotaryEmbedding
from export.onnx_export import export_onnx

TOL = 1e-5


def build(nodes, inputs="x: {shape: [B, T, 16]}", outputs=None):
    text = f"spec: 1\nname: t\ninputs: {{{inputs}}}\nnodes:\n" + "".join(f"  {n}\n" for n in nodes)
    if outputs:
        text += f"outputs: [{', '.join(outputs)}]\n"
    return builder.build(builder.load(text)).eval()


def test_rmsnorm_is_torchs_and_llamas():
    torch.manual_seed(0)
    m = build(["n: {op: RMSNorm, eps: 1.0e-6}"])
    assert isinstance(m.n, torch.nn.RMSNorm) and list(m.state_dict()) == ["n.weight"]
    with torch.no_grad():
        m.n.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 5, 16)
    want = m.n.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    assert (m(x) - want).abs().max() <= TOL


def rope_reference(x, theta, interleaved):
    """x [B, T, H, d]: HF's rotate_half for half-split; Meta LLaMA's complex multiply for interleaved."""
    b, t, h, d = x.shape
    inv = 1.0 / theta ** (torch.arange(0, d, 2).float() / d)
    angles = torch.arange(t).float()[:, None] * inv[None]
    if interleaved:
        z = torch.view_as_complex(x.reshape(b, t, h, d // 2, 2))
        return torch.view_as_real(z * torch.polar(torch.ones_like(angles), angles)[None, :, None]).flatten(-2)
    emb = torch.cat([angles, angles], -1)
    q, _ = apply_rotary_pos_emb(x.transpose(1, 2), x.transpose(1, 2), emb.cos()[None], emb.sin()[None])
    return q.transpose(1, 2)


@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_matches_the_published_layouts_and_offsets(interleaved):
    torch.manual_seed(0)
    x = torch.randn(2, 9, 3, 8)
    rope = RotaryEmbedding(8, theta=500000.0, interleaved=interleaved)
    assert (rope(x) - rope_reference(x, 500000.0, interleaved)).abs().max() <= TOL
    # offset: positions 4.. of a sequence are positions 0.. shifted by 4
    assert (rope(x[:, 4:], 4) - rope(x)[:, 4:]).abs().max() <= TOL
    # fraction 0.5 rotates the first half of each head and passes the rest through
    half = RotaryEmbedding(8, fraction=0.5, interleaved=interleaved)
    assert torch.equal(half(x)[..., 4:], x[..., 4:])
    assert (half(x)[..., :4] - rope_reference(x[..., :4], 10000.0, interleaved)).abs().max() <= TOL
    # [B, T, H*d] with heads: the same per head; rotations keep norms, inner products depend on distance
    flat = build(["r: {op: rope, heads: 3, theta: 500000, interleaved: %s}" % str(interleaved).lower()],
                 "x: {shape: [B, T, 24]}")
    assert (flat(x.flatten(2)) - rope(x).flatten(2)).abs().max() <= TOL
    assert torch.allclose(rope(x).norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_grouped_query_attention_with_rope_equals_repeated_heads():
    torch.manual_seed(0)
    m = build(["q: {op: Linear, out_features: 16}", "k: {op: Linear, in: x, out_features: 4}",
               "v: {op: Linear, in: x, out_features: 4}",
               "a: {op: attention, in: {q: q, k: k, v: v}, heads: 4, kv_heads: 1, causal: true, "
               "rope: {theta: 100}}"])
    x = torch.randn(2, 6, 16)
    with torch.no_grad():
        q = m.q(x).reshape(2, 6, 4, 4)
        k, v = m.k(x).reshape(2, 6, 1, 4), m.v(x).reshape(2, 6, 1, 4)
        rope = RotaryEmbedding(4, theta=100)
        q, k = rope(q).transpose(1, 2), rope(k).transpose(1, 2).repeat(1, 4, 1, 1)
        scores = q @ k.transpose(-1, -2) / 2 + torch.full((6, 6), float("-inf")).triu(1)
        want = (scores.softmax(-1) @ v.transpose(1, 2).repeat(1, 4, 1, 1)).transpose(1, 2).reshape(2, 6, 16)
        assert (m(x) - want).abs().max() <= TOL


def test_additive_bias_and_alibi():
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert torch.allclose(alibi_slopes(12)[8:], torch.tensor([2.0 ** -(i + 0.5) for i in range(4)]))
    torch.manual_seed(0)
    m = build(["bias: {op: alibi, in: x, heads: 2}",
               "a: {op: attention, in: {q: x, k: x, v: x, bias: bias}, heads: 2, causal: true}"], outputs=["a", "bias"])
    x = torch.randn(1, 5, 16)
    out, bias = m(x)
    assert bias.shape == (2, 5, 5) and bias[1, 4, 0].item() == pytest.approx(-4 * 2 ** -8)
    q = x.reshape(1, 5, 2, 8).transpose(1, 2)
    scores = q @ q.transpose(-1, -2) / math.sqrt(8) + bias + torch.full((5, 5), float("-inf")).triu(1)
    want = (scores.softmax(-1) @ q).transpose(1, 2).reshape(1, 5, 16)
    assert (out - want).abs().max() <= TOL
    assert list(m.state_dict()) == []            # the slopes are a buffer outside the state_dict


def test_gated_units_scalars_and_arange():
    torch.manual_seed(0)
    m = build(["g: {op: GLU}", "s: {op: swiglu, in: x}", "s2: {op: swiglu, in: {gate: x, up: g2}}",
               "g2: {op: mul, in: x, value: 0.5}", "qg: {op: QuickGELU, in: x}",
               "plus: {op: add, in: x, value: 1}", "minus: {op: sub, in: x, value: 2.5}",
               "over: {op: div, in: x, value: 4}", "i: {op: arange, end: 7, start: 1, step: 2}",
               "t: {op: arange, in: x, end: T, dtype: float32}"],
              outputs=["g", "s", "s2", "qg", "plus", "minus", "over", "i", "t"])
    x = torch.randn(2, 3, 16)
    g, s, s2, qg, plus, minus, over, i, t = m(x)
    a, b = x.chunk(2, -1)
    assert torch.equal(g, F.glu(x)) and torch.equal(s, F.silu(a) * b) and torch.equal(s2, F.silu(x) * (x * 0.5))
    assert torch.allclose(qg, x * torch.sigmoid(1.702 * x))
    assert torch.equal(plus, x + 1) and torch.equal(minus, x - 2.5) and torch.equal(over, x / 4)
    assert i.tolist() == [1, 3, 5] and t.tolist() == [0.0, 1.0, 2.0] and t.dtype == torch.float32
    assert list(m.state_dict()) == [] and [n for n, _ in m.named_buffers()] == ["i.table"]


@pytest.mark.parametrize("node,message", [
    ("{op: attention, heads: 4, kv_heads: 3}", "kv_heads must be a positive integer dividing heads=4"),
    ("{op: attention, heads: 4, rope: {theta: 10, spin: 1}}", "rope must be a mapping of theta, fraction"),
    ("{op: attention, heads: 2, rope: {fraction: 0.1}}", "rotates no pair of features"),
    ("{op: rope, heads: 3}", "heads must be a positive integer dividing"),
    ("{op: swiglu, dim: 0}", "swiglu has no argument 'dim'"),
    ("{op: add, value: 1, in: [x, x]}", None),
    ("{op: sub, value: 1, in: [x, x]}", "subtract needs two operands"),
    ("{op: add}", "add needs at least two operands"),
    ("{op: arange, end: S, in: x}", "end 'S' must be a dim of the input"),
])
def test_mistakes_are_one_line_errors(node, message):
    text = f"spec: 1\nname: t\ninputs: {{x: {{shape: [B, T, 16]}}}}\nnodes:\n  n: {node}\n"
    if message is None:
        builder.load(text)
        return
    with pytest.raises(SpecError, match=message):
        builder.load(text)


def test_onnx_export_of_every_new_op(tmp_path):
    spec = builder.load("""
spec: 1
name: llm_ops
inputs: {x: {shape: [B, T, 16]}}
nodes:
  n: {op: RMSNorm, eps: 1.0e-6}
  q: {op: Linear, out_features: 16}
  k: {op: Linear, in: n, out_features: 8}
  v: {op: Linear, in: n, out_features: 8}
  r: {op: rope, in: q, heads: 4, interleaved: true, fraction: 0.5}
  bias: {op: alibi, in: x, heads: 4}
  a: {op: attention, in: {q: r, k: k, v: v, bias: bias}, heads: 4, kv_heads: 2, causal: true, rope: {theta: 500000}}
  up: {op: Linear, out_features: 32}
  g: {op: swiglu}
  glu: {op: GLU}
  qg: {op: QuickGELU}
  s: {op: add, value: 1.0}
  pos: {op: arange, in: x, end: T, dtype: float32}
""")
    torch.manual_seed(0)
    module = builder.build(spec)
    result = export_onnx(module, tmp_path / "m.onnx", spec=spec)
    assert result.dynamic == ["B", "T"] and result.max_abs <= TOL


@pytest.mark.parametrize("shape,normalized,eps,affine", [((2, 5, 16), [16], None, True),
                                                         ((3, 4, 6), [4, 6], 1e-3, False)])
def test_rmsnorm_equals_torchs_fused_kernel(shape, normalized, eps, affine):
    from builder.ops.llm import RMSNorm
    torch.manual_seed(0)
    ours = RMSNorm(normalized, eps=eps, elementwise_affine=affine)
    ref = torch.nn.RMSNorm(normalized, eps=eps, elementwise_affine=affine)
    if affine:
        with torch.no_grad():
            ours.weight.uniform_(0.5, 1.5)
        ref.load_state_dict(ours.state_dict())
    x = torch.randn(shape, requires_grad=True)
    y = ours(x)
    assert (y - ref(x)).abs().max() <= TOL
    (gx,) = torch.autograd.grad(y.square().sum(), x)
    (want,) = torch.autograd.grad(ref(x).square().sum(), x)
    assert (gx - want).abs().max() <= TOL
