"""Issue 22's vision ops against the torch code they stand for: DropPath (torchvision's StochasticDepth),
roll, causal Conv1d, LayerNorm2d, Swin's window partition/reverse, relative-position bias and shift mask
(written here after torchvision's swin_transformer.py), in a spec, trained, and exported to ONNX."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import builder
from builder.core.errors import SpecError
from export.onnx_export import export_onnx


def build(text, **params):
    return builder.build(builder.load(text, **params))


# ---- DropPath ------------------------------------------------------------------------------------

DROP = """
spec: 1
name: drop
params: {rate: 0.3, depth: 4}
inputs:
  x: {shape: [B, 8]}
blocks:
  res:
    nodes:
      fc: {op: Linear, out_features: 8}
      drop: {op: DropPath, p: '${rate * i / (depth - 1)}'}
      add: {op: add, in: [drop, x]}
nodes:
  layers: {block: res, repeat: '${depth}'}
"""


def test_drop_path_rate_follows_the_copy_index():
    model = build(DROP)
    rates = [model.get_submodule(f"layers.{i}.drop").p for i in range(4)]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_drop_path_drops_whole_rows_and_rescales_in_training_only():
    from builder.ops.vision import DropPath
    x = torch.ones(4000, 3, 2)
    torch.manual_seed(0)
    m = DropPath(0.25)
    y = m(x)
    per_row = y.reshape(4000, -1)
    assert set(per_row.min(1).values.tolist()) <= {0.0, torch.tensor(1 / 0.75).item()}
    assert torch.equal(per_row.min(1).values, per_row.max(1).values)   # a row is kept or dropped whole
    assert abs((per_row[:, 0] == 0).float().mean().item() - 0.25) < 0.03
    assert abs(y.mean().item() - 1.0) < 0.05                             # expectation kept
    batch = DropPath(0.5, mode="batch")(x)
    assert batch.unique().numel() == 1
    assert torch.equal(m.eval()(x), x)


def test_drop_path_rejects_a_rate_outside_0_1():
    with pytest.raises(SpecError, match="probability"):
        builder.load(DROP, rate=1.5)


# ---- roll, causal Conv1d, LayerNorm2d --------------------------------------------------------------

MISC = """
spec: 1
name: misc
inputs:
  x: {shape: [B, 4, T]}
nodes:
  causal: {op: Conv1d, out_channels: 6, kernel_size: 3, dilation: 2, padding: causal}
  rolled: {op: roll, shifts: [1, -2], dims: [1, 2]}
  grid: {op: unsqueeze, dim: 3}
  norm: {op: LayerNorm2d, eps: 1.0e-6}
  drop: {op: DropPath, p: 0.2}
outputs: [causal, rolled, norm]
"""


def test_causal_conv_roll_and_layernorm2d_match_torch():
    torch.manual_seed(0)
    model = build(MISC).eval()
    x = torch.randn(2, 4, 11)
    causal, rolled, norm = model(x)
    conv = model.causal
    assert causal.shape == (2, 6, 11)
    assert torch.allclose(causal, F.conv1d(F.pad(x, (4, 0)), conv.weight, conv.bias, dilation=2), atol=1e-6)
    # causality: changing step 7 leaves steps 0..6 alone
    x2 = x.clone()
    x2[..., 7] += 1.0
    assert torch.equal(model(x2)[0][..., :7], causal[..., :7])
    assert not torch.equal(model(x2)[0][..., 7], causal[..., 7])
    assert torch.equal(rolled, torch.roll(causal, (1, -2), (1, 2)))
    ln = model.norm
    want = F.layer_norm(rolled.unsqueeze(3).permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, 1e-6).permute(0, 3, 1, 2)
    assert torch.allclose(norm, want, atol=1e-6)
    assert sorted(model.state_dict()) == ["causal.bias", "causal.weight", "norm.bias", "norm.weight"]


def test_causal_padding_is_only_for_conv1d():
    bad = MISC.replace("x: {shape: [B, 4, T]}", "x: {shape: [B, 4, T, T]}").replace("Conv1d", "Conv2d")
    with pytest.raises(SpecError, match="causal is for Conv1d"):
        builder.load(bad)


def test_causal_conv_with_stride_has_the_length_torch_gives():
    spec = builder.load(MISC.replace("dilation: 2, padding: causal", "stride: 2, padding: causal"))
    model = builder.build(spec)
    for t in (9, 10):
        out = model(torch.randn(1, 4, t))[0]
        assert out.shape[2] == (t - 1) // 2 + 1 == F.conv1d(F.pad(torch.randn(1, 4, t), (2, 0)),
                                                            model.causal.weight, stride=2).shape[2]
    from builder.core.types import record
    from builder.shapes import dimexpr
    size = record(spec.network().graph, "causal").out_shapes["out"][2]
    assert [dimexpr.evaluate(size, {"T": t}) for t in (9, 10)] == [5, 5]


# ---- Swin's window parts, against torchvision's formulas ----------------------------------------------

def torchvision_relative_index(wh, ww):
    """torchvision ShiftedWindowAttention.define_relative_coords, step by step."""
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij"))
    flat = torch.flatten(coords, 1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += wh - 1
    rel[:, :, 1] += ww - 1
    rel[:, :, 0] *= 2 * ww - 1
    return rel.sum(-1).flatten()


def torchvision_shift_mask(h, w, window, shift):
    """The mask torchvision's shifted_window_attention builds on every call, as [nW, N, N]."""
    mask = torch.zeros(h, w)
    count = 0
    for hs in ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None)):
        for ws in ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None)):
            mask[hs[0]:hs[1], ws[0]:ws[1]] = count
            count += 1
    mask = mask.view(h // window[0], window[0], w // window[1], window[1]).permute(0, 2, 1, 3)
    mask = mask.reshape(-1, window[0] * window[1])
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


@pytest.mark.parametrize("wh,ww", [(7, 7), (2, 3), (1, 4)])
def test_relative_position_index_is_torchvision_s(wh, ww):
    from builder.ops.vision import RelativePositionBias, relative_position_index
    assert torch.equal(relative_position_index(wh, ww), torchvision_relative_index(wh, ww))
    bias = RelativePositionBias((wh, ww), heads=3)
    assert [n for n, _ in bias.named_parameters()] == ["table"] and "index" not in bias.state_dict()
    n = wh * ww
    want = bias.table[torchvision_relative_index(wh, ww)].view(n, n, -1).permute(2, 0, 1)
    assert torch.equal(bias(), want)


@pytest.mark.parametrize("h,w,window,shift", [(14, 14, (7, 7), (3, 3)), (8, 12, (4, 4), (2, 2)),
                                              (6, 9, (2, 3), (1, 1))])
def test_shift_mask_is_torchvision_s(h, w, window, shift):
    from builder.ops.vision import shifted_window_mask
    assert torch.equal(shifted_window_mask(h, w, window, shift).squeeze(1), torchvision_shift_mask(h, w, window, shift))


WINDOWS = """
spec: 1
name: windows
inputs:
  x: {shape: [B, 8, 12, 5]}
nodes:
  shifted: {op: roll, shifts: [-2, -2], dims: [1, 2]}
  windows: {op: window_partition, window: 4}
  mask: {op: shift_mask, in: shifted, window: 4, shift: 2}
  bias: {op: relative_position_bias, window: 4, heads: 2}
  back: {op: window_reverse, in: {windows: windows, like: shifted}, window: 4}
outputs: [windows, back, mask, bias]
"""


def test_window_partition_and_reverse_round_trip():
    model = build(WINDOWS)
    x = torch.randn(3, 8, 12, 5)
    windows, back, mask, bias = model(x)
    shifted = torch.roll(x, (-2, -2), (1, 2))
    assert windows.shape == (3 * 2 * 3, 16, 5)
    # window (b=1, row 1, col 2) is the 4x4 patch at rows 4..7, cols 8..11, row by row
    assert torch.equal(windows[1 * 6 + 1 * 3 + 2], shifted[1, 4:8, 8:12].reshape(16, 5))
    assert torch.equal(back, shifted)
    assert mask.shape == (6, 1, 16, 16) and bias.shape == (2, 16, 16)
    assert torch.equal(mask.squeeze(1), torchvision_shift_mask(8, 12, (4, 4), (2, 2)))
    assert sorted(model.state_dict()) == ["bias.table"]          # index and mask are buffers, not saved


def test_window_partition_refuses_a_map_that_is_not_whole_windows():
    with pytest.raises(SpecError, match="not divisible by 4"):
        builder.load(WINDOWS.replace("[B, 8, 12, 5]", "[B, 8, 10, 5]"))


def test_the_vision_ops_train_and_export(tmp_path):
    """One spec through a few optimizer steps and onnxruntime, B and T dynamic."""
    spec = builder.load(MISC.replace("outputs: [causal, rolled, norm]", "outputs: [drop]"))
    model = builder.build(spec)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.manual_seed(0)
    x = torch.randn(4, 4, 9)
    losses = []
    for _ in range(5):
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    result = export_onnx(model.eval(), tmp_path / "m.onnx", spec=spec)
    assert result.dynamic == ["B", "T"] and result.max_abs < 1e-4


DYNAMIC_WINDOWS = """
spec: 1
name: dynamic-windows
dims:
  H: {multiple_of: 4, example: 8}
  W: {multiple_of: 4, example: 12}
inputs:
  x: {shape: [B, H, W, 5]}
nodes:
  windows: {op: window_partition, window: 4}
  fc: {op: Linear, out_features: 5}
  back: {op: window_reverse, in: {windows: fc, like: x}, window: 4}
"""


def test_windows_over_a_dynamic_map_export_with_dynamic_h_w(tmp_path):
    """Partition and reverse need only H, W to be whole windows (declared multiple_of): they stay dynamic
    in ONNX; only shift_mask needs the map's size when it is built."""
    from builder.core.types import record
    spec = builder.load(DYNAMIC_WINDOWS)
    assert record(spec.network().graph, "windows").out_shapes["out"] == ("B*H*W//16", 16, 5)
    model = builder.build(spec).eval()
    x = torch.randn(2, 8, 16, 5)
    fc = model.fc
    assert torch.allclose(model(x), fc(x), atol=1e-6)      # per-position linear: windows change nothing
    result = export_onnx(model, tmp_path / "w.onnx", spec=spec)
    assert result.dynamic == ["B", "H", "W"] and result.max_abs < 1e-5
    assert len({(s["H"], s["W"]) for s in result.shapes_checked}) >= 3       # other map sizes than exported
