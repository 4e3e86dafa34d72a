"""Element-wise, comparison, reduction, index, layer, sampling and mask ops (issue 13 items 2, 3, 5):
each node's values equal the torch function it stands for, shapes follow, and ONNX exports verified."""
from __future__ import annotations

import textwrap
from pathlib import Path

import onnx
import pytest
import torch
import torch.nn.functional as F

import builder
from builder.core.types import record
from export.onnx_export import export_onnx


def one_node(node: str, inputs: str = "x: {shape: [B, 3, 4, 5]}", outputs: str | None = None):
    text = textwrap.dedent(f"""\
        spec: 1
        name: one
        inputs: {{{inputs}}}
        nodes:
          n: {node}
        """) + (f"outputs: {outputs}\n" if outputs else "")
    spec = builder.load(text)
    return spec, builder.build(spec).eval()


X = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
POS = X.abs() + 0.1

UNARY = [
    ("{op: exp}", X, torch.exp(X)),
    ("{op: log}", POS, torch.log(POS)),
    ("{op: sqrt}", POS, torch.sqrt(POS)),
    ("{op: rsqrt}", POS, torch.rsqrt(POS)),
    ("{op: abs}", X, torch.abs(X)),
    ("{op: neg}", X, torch.neg(X)),
    ("{op: pow, exponent: 3}", X, torch.pow(X, 3)),
    ("{op: clamp, min: -0.5, max: 0.25}", X, torch.clamp(X, min=-0.5, max=0.25)),
    ("{op: clamp, min: 0}", X, torch.clamp(X, min=0)),
    ("{op: gt, value: 0.1}", X, torch.gt(X, 0.1)),
    ("{op: le, value: 0}", X, torch.le(X, 0)),
    ("{op: cast, dtype: int64}", X * 3, (X * 3).to(torch.int64)),
    ("{op: norm, dim: 1}", X, torch.norm(X, dim=1)),
    ("{op: norm, p: 1, dim: [2, 3], keepdim: true}", X, torch.norm(X, p=1, dim=(2, 3), keepdim=True)),
    ("{op: norm, p: inf, dim: -1}", X, torch.linalg.vector_norm(X, ord=float("inf"), dim=-1)),
    ("{op: norm}", X, torch.norm(X)),
    ("{op: max}", X, torch.max(X)),
    ("{op: min, dim: 2}", X, torch.min(X, dim=2).values),
    ("{op: argmax, dim: 1, keepdim: true}", X, torch.argmax(X, dim=1, keepdim=True)),
    ("{op: argmax}", X, torch.argmax(X)),
    ("{op: cumsum, dim: 3}", X, torch.cumsum(X, dim=3)),
    ("{op: Upsample, scale_factor: 2}", X, F.interpolate(X, scale_factor=2)),
    ("{op: Upsample, size: [7, 9], mode: bilinear, align_corners: false}", X,
     F.interpolate(X, size=(7, 9), mode="bilinear", align_corners=False)),
    ("{op: ZeroPad2d, padding: [1, 2, 3, 0]}", X, F.pad(X, (1, 2, 3, 0))),
    ("{op: InstanceNorm2d}", X, F.instance_norm(X)),
]


@pytest.mark.parametrize("node,x,want", UNARY, ids=[u[0] for u in UNARY])
def test_one_input_ops_equal_torch(node, x, want):
    spec, module = one_node(node)
    got = module(x)
    assert got.dtype == want.dtype
    assert tuple(got.shape) == tuple(want.shape)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    shape = record(spec.network().graph, "n").out_shape
    assert tuple(d if isinstance(d, int) else 2 for d in shape) == tuple(want.shape)
    assert record(spec.network().graph, "n").dtype == str(want.dtype).removeprefix("torch.")


def test_max_with_dim_has_values_and_indices_ports():
    spec, module = one_node("{op: max, dim: 1}", outputs="[n.values, n.indices]")
    values, indices = module(X)
    want = torch.max(X, dim=1)
    assert torch.equal(values, want.values) and torch.equal(indices, want.indices)
    assert record(spec.network().graph, "n").ports == ("values", "indices")


def test_two_input_ops_equal_torch():
    y = torch.randn(2, 1, 4, 5, generator=torch.Generator().manual_seed(1))
    inputs = "x: {shape: [B, 3, 4, 5]}, y: {shape: [B, 1, 4, 5]}"
    for op, fn in (("eq", torch.eq), ("ne", torch.ne), ("lt", torch.lt), ("le", torch.le), ("gt", torch.gt),
                   ("ge", torch.ge)):
        _, module = one_node(f"{{op: {op}, in: [x, y]}}", inputs)
        assert torch.equal(module(X, y), fn(X, y))
    _, module = one_node("{op: eq, in: [x, x]}", inputs)
    assert module(X, y).all()
    # logic over comparisons, where and masked_fill
    text = """
spec: 1
inputs: {x: {shape: [B, 3, 4, 5]}, y: {shape: [B, 1, 4, 5]}}
nodes:
  pos: {op: gt, in: x, value: 0}
  big: {op: gt, in: [x, y]}
  both: {op: logical_and, in: [pos, big]}
  either: {op: logical_or, in: [pos, big]}
  neither: {op: logical_not, in: either}
  pick: {op: where, in: {cond: both, a: x, b: y}}
  filled: {op: masked_fill, in: {x: x, mask: neither}, value: -5.0}
outputs: [both, either, neither, pick, filled]
"""
    both, either, neither, pick, filled = builder.build(builder.load(text))(X, y)
    pos, big = X > 0, X > y
    assert torch.equal(both, torch.logical_and(pos, big)) and torch.equal(either, torch.logical_or(pos, big))
    assert torch.equal(neither, torch.logical_not(torch.logical_or(pos, big)))
    assert torch.equal(pick, torch.where(pos & big, X, y))
    assert torch.equal(filled, X.masked_fill(~(pos | big), -5.0))


def test_gather_pixel_shuffle_3d_layers_and_distances_equal_torch():
    g = torch.Generator().manual_seed(2)
    index = torch.randint(0, 3, (2, 2, 4, 5), generator=g)
    _, module = one_node("{op: gather, in: {x: x, index: i}, dim: 1}",
                         "x: {shape: [B, 3, 4, 5]}, i: {shape: [B, 2, 4, 5], dtype: int64}")
    assert torch.equal(module(X, index), torch.gather(X, 1, index))

    x8 = torch.randn(2, 8, 3, 4, generator=g)
    _, module = one_node("{op: PixelShuffle, upscale_factor: 2}", "x: {shape: [B, 8, 3, 4]}")
    assert torch.equal(module(x8), F.pixel_shuffle(x8, 2))

    vol = torch.randn(2, 3, 6, 6, 6, generator=g)
    text = """
spec: 1
inputs: {x: {shape: [B, 3, 6, 6, 6]}}
nodes:
  conv: {op: Conv3d, out_channels: 4, kernel_size: 3, padding: 1}
  bn: {op: BatchNorm3d}
  pool: {op: MaxPool3d, kernel_size: 2}
"""
    spec = builder.load(text)
    module = builder.build(spec).eval()
    ref = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3, padding=1), torch.nn.BatchNorm3d(4), torch.nn.MaxPool3d(2))
    ref.load_state_dict({k.replace("conv", "0").replace("bn", "1"): v for k, v in module.state_dict().items()})
    torch.testing.assert_close(module(vol), ref.eval()(vol))
    assert record(spec.network().graph, "pool").out_shape == ("B", 4, 3, 3, 3)
    assert sum(p.numel() for p in module.parameters()) == sum(p.numel() for p in ref.parameters())

    a, b = torch.randn(5, 16, generator=g), torch.randn(5, 16, generator=g)
    inputs = "a: {shape: [B, 16]}, b: {shape: [B, 16]}"
    _, module = one_node("{op: PairwiseDistance, in: [a, b], p: 1.0}", inputs)
    torch.testing.assert_close(module(a, b), F.pairwise_distance(a, b, p=1.0))
    _, module = one_node("{op: CosineSimilarity, in: [a, b], dim: 1}", inputs)
    torch.testing.assert_close(module(a, b), F.cosine_similarity(a, b, dim=1))


def test_sequence_mask_and_last_valid():
    lengths = torch.tensor([3, 1, 5])
    seq = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(3))
    text = """
spec: 1
inputs: {seq: {shape: [B, T, 4]}, lengths: {shape: [B], dtype: int64}}
nodes:
  mask: {op: sequence_mask, in: {lengths: lengths, like: seq}}
  fixed: {op: sequence_mask, in: lengths, max_len: 6}
  last: {op: last_valid, in: {x: seq, lengths: lengths}}
outputs: [mask, fixed, last]
"""
    spec = builder.load(text)
    mask, fixed, last = builder.build(spec)(seq, lengths)
    assert mask.tolist() == [[True] * 3 + [False] * 2, [True] + [False] * 4, [True] * 5]
    assert fixed.shape == (3, 6) and fixed.sum(1).tolist() == [3, 1, 5]
    assert torch.equal(last, torch.stack([seq[0, 2], seq[1, 0], seq[2, 4]]))
    g = spec.network().graph
    assert record(g, "mask").out_shape == ("B", "T") and record(g, "mask").dtype == "bool"
    assert record(g, "last").out_shape == ("B", 4)


def test_random_ops_draw_from_torchs_generator_in_train_and_eval():
    _, module = one_node("{op: randn_like}")
    _, uniform = one_node("{op: rand_like}")
    for mode in (module.train, module.eval):
        mode()
        torch.manual_seed(7)
        got = module(X)
        torch.manual_seed(7)
        assert torch.equal(got, torch.randn_like(X))
    torch.manual_seed(7)
    u = uniform(X)
    torch.manual_seed(7)
    assert torch.equal(u, torch.rand_like(X)) and 0 <= u.min() and u.max() < 1
    assert not torch.equal(module(X), module(X))  # a fresh draw per call


EXPORTED = """
spec: 1
name: many-ops
inputs:
  x: {shape: [B, 4, 8, 8]}
  lengths: {shape: [B], dtype: int64}
  seq: {shape: [B, T, 6]}
  vol: {shape: [B, 2, 4, 4, 4]}
nodes:
  conv3: {op: Conv3d, in: vol, out_channels: 3, kernel_size: 3, padding: 1}
  bn3: {op: BatchNorm3d}
  pool3: {op: MaxPool3d, kernel_size: 2}
  a: {op: abs, in: pool3}
  sq: {op: sqrt, in: a}
  ng: {op: neg, in: sq}
  lt0: {op: lt, in: [ng, pool3]}
  nt: {op: logical_not, in: lt0}
  both3: {op: logical_and, in: [lt0, nt]}
  mn: {op: min, in: ng}
  amax: {op: argmax, in: sq}
  e: {op: exp, in: x}
  l: {op: log, in: e}
  r: {op: rsqrt, in: e}
  p: {op: pow, in: x, exponent: 2}
  c: {op: clamp, in: x, min: -0.5, max: 0.5}
  gt0: {op: gt, in: x, value: 0}
  eq2: {op: eq, in: [x, c]}
  both: {op: logical_or, in: [gt0, eq2]}
  w: {op: where, in: {cond: both, a: x, b: p}}
  f: {op: cast, in: gt0, dtype: float32}
  mf: {op: masked_fill, in: {x: r, mask: gt0}, value: -1.0}
  nm: {op: norm, in: l, dim: 1}
  mx: {op: max, in: x, dim: 1}
  am: {op: argmax, in: x, dim: 1, keepdim: true}
  cs: {op: cumsum, in: f, dim: 3}
  g: {op: gather, in: {x: x, index: am}, dim: 1}
  up: {op: Upsample, in: x, scale_factor: 2, mode: bilinear}
  ps: {op: PixelShuffle, in: up, upscale_factor: 2}
  inn: {op: InstanceNorm2d, in: x, affine: true}
  zp: {op: ZeroPad2d, in: inn, padding: [1, 2, 3, 4]}
  flat: {op: Flatten, in: x}
  pd: {op: PairwiseDistance, in: [flat, flat]}
  cos: {op: CosineSimilarity, in: [x, e]}
  eps: {op: randn_like, in: x}
  noisy: {op: add, in: [x, eps]}
  u: {op: rand_like, in: seq}
  mask: {op: sequence_mask, in: {lengths: lengths, like: seq}}
  last: {op: last_valid, in: {x: seq, lengths: lengths}}
outputs: [w, mf, nm, mx.values, mx.indices, g, ps, zp, pd, cos, noisy, u, mask, last, cs, both3, mn, amax]
"""


def test_onnx_export_verifies_deterministic_outputs_and_checks_sampled_ones(tmp_path):
    spec = builder.load(EXPORTED)
    module = builder.build(spec)
    result = export_onnx(module, tmp_path / "m.onnx", spec=spec)
    kinds = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert {"RandomNormalLike", "RandomUniformLike", "Resize", "DepthToSpace", "GatherElements", "Conv",
            "MaxPool", "ReduceMin", "ArgMax", "Not", "And", "Less"} <= kinds
    compared = {c.output for c in result.comparisons}
    assert "noisy" not in compared and "u" not in compared
    deterministic = {o.name for o in spec.network().outputs} - {"noisy", "u"}
    assert compared == deterministic and len(deterministic) == 16


def test_every_registered_op_has_one_row_on_the_ops_page():
    from builder import ops
    page = (Path(__file__).resolve().parents[1] / "docs" / "ops.md").read_text(encoding="utf-8")
    start = page.index("| op |")
    section = page[start:page.index("\n#", start + 1) if "\n#" in page[start:] else len(page)]
    rows = [line.split("|")[1].strip().strip("`") for line in section.splitlines() if line.startswith("| `")]
    assert sorted(rows) == sorted(ops.names())


def test_last_valid_of_a_gru_over_padded_sequences_equals_torchs_packed_final_state():
    spec = builder.load("""
spec: 1
inputs: {tokens: {shape: [B, T], dtype: int64}, lengths: {shape: [B], dtype: int64}}
nodes:
  emb: {op: Embedding, in: tokens, num_embeddings: 20, embedding_dim: 6}
  gru: {op: GRU, hidden_size: 5}
  last: {op: last_valid, in: {x: gru.output, lengths: lengths}}
  pad: {op: sequence_mask, in: {lengths: lengths, like: tokens}}
outputs: [last, pad]
""")
    module = builder.build(spec)
    tokens = torch.randint(0, 20, (3, 7), generator=torch.Generator().manual_seed(4))
    lengths = torch.tensor([7, 2, 4])
    last, pad = module(tokens, lengths)
    packed = torch.nn.utils.rnn.pack_padded_sequence(module.emb(tokens), lengths, batch_first=True,
                                                     enforce_sorted=False)
    _, h = module.gru.rnn(packed)
    torch.testing.assert_close(last, h[0])
    assert torch.equal(pad, torch.arange(7)[None, :] < lengths[:, None])
