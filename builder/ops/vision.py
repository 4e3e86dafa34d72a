"""Ops of today's vision networks: stochastic depth (`DropPath`), `roll`, channels-first `LayerNorm2d`
and the window-attention parts of Swin (`window_partition`, `window_reverse`, `relative_position_bias`,
`shift_mask`).

Swin's relative-position index and its shifted-window mask follow from the window size and the feature
map's size alone, so they are computed when the module is built and kept as non-persistent buffers: a
Swin spec trained from scratch has them (nothing is learned or loaded for them), and checkpoints do not
carry them. Causal padding for Conv1d (`padding: causal`) lives with the conv rule in layers.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from builder.shapes import rules as S
from builder.shapes.rules import ShapeError
from builder.ops.layers import _tuple, layer
from builder.ops.registry import OpDef, register


# ---- modules ------------------------------------------------------------------------------------

class DropPath(nn.Module):
    """Stochastic depth (torchvision.ops.StochasticDepth): in training, zero the whole residual branch of
    a sample (mode row) or of the batch (mode batch) with probability p and scale survivors by 1/(1-p)."""

    def __init__(self, p: float = 0.0, mode: str = "row"):
        super().__init__()
        self.p, self.mode = float(p), mode

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        shape = [x.shape[0]] + [1] * (x.dim() - 1) if self.mode == "row" else [1] * x.dim()
        noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise = noise / survival
        return x * noise

    def extra_repr(self):
        return f"p={self.p}, mode={self.mode}"


class Roll(nn.Module):
    def __init__(self, shifts, dims=None):
        super().__init__()
        self.shifts, self.dims = shifts, dims

    def forward(self, x):
        if self.dims is None:
            return torch.roll(x, self.shifts)
        return torch.roll(x, self.shifts, self.dims)


class LayerNorm2d(nn.LayerNorm):
    """nn.LayerNorm over dim 1 of [B, C, *spatial] (torchvision's ConvNeXt LayerNorm2d): same parameters."""

    def forward(self, x):
        x = x.movedim(1, -1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.movedim(-1, 1)


class WindowPartition(nn.Module):
    """[B, H, W, C] -> [B * (H/wh) * (W/ww), wh * ww, C]: the non-overlapping windows, row by row."""

    def __init__(self, window):
        super().__init__()
        self.window = tuple(window)

    def forward(self, x):
        b, h, w, c = x.shape
        wh, ww = self.window
        x = x.reshape(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(-1, wh * ww, c)


class WindowReverse(nn.Module):
    """[B * nW, wh * ww, C] windows back to [B, H, W, C]; B, H, W are read from `like` at run time."""

    def __init__(self, window):
        super().__init__()
        self.window = tuple(window)

    def forward(self, windows, like):
        b, h, w = like.shape[0], like.shape[1], like.shape[2]
        wh, ww = self.window
        c = windows.shape[-1]
        x = windows.reshape(b, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(b, h, w, c)


def relative_position_index(wh: int, ww: int) -> torch.Tensor:
    """[N * N] index into the (2wh-1)(2ww-1) table of the relative offset between window positions."""
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)     # N, N, 2
    return ((rel[..., 0] + wh - 1) * (2 * ww - 1) + rel[..., 1] + ww - 1).flatten()


class RelativePositionBias(nn.Module):
    """A learned table [(2wh-1)(2ww-1), heads] read through the built-in index: [heads, N, N]."""

    def __init__(self, window, heads: int):
        super().__init__()
        self.window, self.heads = tuple(window), heads
        wh, ww = self.window
        self.table = nn.Parameter(torch.empty((2 * wh - 1) * (2 * ww - 1), heads))
        self.register_buffer("index", relative_position_index(wh, ww), persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.trunc_normal_(self.table, std=0.02)

    def forward(self):
        n = self.window[0] * self.window[1]
        return self.table[self.index].reshape(n, n, self.heads).permute(2, 0, 1)


def shifted_window_mask(h: int, w: int, window, shift) -> torch.Tensor:
    """[nW, 1, N, N]: 0 where two positions of a window came from the same region before the cyclic shift,
    -100 where the shift brought them together (Swin's attention mask)."""
    (wh, ww), (sh, sw) = window, shift
    region = torch.zeros(h, w)
    count = 0
    for hs in ((0, h - wh), (h - wh, h - sh), (h - sh, h)):
        for ws in ((0, w - ww), (w - ww, w - sw), (w - sw, w)):
            region[hs[0]:hs[1], ws[0]:ws[1]] = count
            count += 1
    region = region.reshape(h // wh, wh, w // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)
    diff = region.unsqueeze(1) - region.unsqueeze(2)
    return torch.where(diff != 0, -100.0, 0.0).unsqueeze(1)


class ShiftMask(nn.Module):
    """Returns the mask computed at build time for a fixed H x W map (its input only gives the sizes)."""

    def __init__(self, size, window, shift):
        super().__init__()
        self.register_buffer("mask", shifted_window_mask(*size, window, shift), persistent=False)

    def forward(self, x):
        return self.mask


# ---- shape rules --------------------------------------------------------------------------------

def _probability(ctx, name="p"):
    p = ctx.args.get(name, 0.0)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ShapeError(f"{name} must be a probability between 0 and 1, got {p!r}")
    return p


def _drop_path(ctx):
    _probability(ctx)
    if ctx.args.get("mode", "row") not in ("row", "batch"):
        raise ShapeError(f"mode must be 'row' (per sample) or 'batch', got {ctx.args['mode']!r}")
    if len(ctx.shapes[0]) < 1:
        raise ShapeError("DropPath needs an input with a batch dim")
    return ctx.shapes[0]


register(OpDef("DropPath", _drop_path, build=lambda a: DropPath(a.get("p", 0.0), a.get("mode", "row")),
               arg_names=("p", "mode"), aliases=("StochasticDepth",), category="layer",
               doc="stochastic depth: in training, drop a sample's residual branch with probability p "
                   "(mode row; batch: the whole batch's), survivors scaled by 1/(1-p); identity in eval",
               shape_doc='the shape of x'))


def _ints(v, what):
    vs = list(v) if isinstance(v, (list, tuple)) else [v]
    if not vs or not all(isinstance(x, int) and not isinstance(x, bool) for x in vs):
        raise ShapeError(f"{what} must be an integer or a list of integers, got {v!r}")
    return vs


def _roll(ctx):
    shape = ctx.shapes[0]
    shifts = _ints(ctx.args["shifts"], "shifts")
    dims = ctx.args.get("dims")
    if dims is None:
        if len(shifts) != 1:
            raise ShapeError("roll without `dims` takes one shift (the flattened tensor is rolled)")
        ctx.args["_roll"] = (shifts[0], None)
        return shape
    dims = [S.norm_dim(d, len(shape), "dims") for d in _ints(dims, "dims")]
    if len(dims) != len(shifts):
        raise ShapeError(f"shifts {shifts} and dims {dims} must have the same length")
    ctx.args["_roll"] = (tuple(shifts), tuple(dims))
    return shape


register(OpDef("roll", _roll, build=lambda a: Roll(*a["_roll"]), arg_names=("shifts", "dims"),
               required=("shifts",), in_dtype=None, category="shape",
               doc="torch.roll: shift elements cyclically by `shifts` along `dims` (Swin's cyclic window shift)",
               shape_doc='the shape of x'))


def _layernorm2d(ctx):
    shape = ctx.shapes[0]
    if len(shape) < 3:
        raise ShapeError(f"LayerNorm2d expects [B, C, *spatial], got {S.fmt(shape)}")
    c = shape[1]
    if not S.is_static(c):
        raise ShapeError(f"LayerNorm2d needs a static channel dim 1, got {S.fmt(shape)}")
    given = ctx.args.get("normalized_shape")
    if given not in (None, c, [c], (c,)):
        raise ShapeError(f"normalized_shape {given} is not the channel dim of {S.fmt(shape)}")
    ctx.args["normalized_shape"] = [c]
    return shape


layer("LayerNorm2d", nn.LayerNorm, _layernorm2d, inferred=("normalized_shape",),
      build=lambda a: LayerNorm2d(**{k: v for k, v in a.items() if not k.startswith("_")}),
      doc="LayerNorm over the channel dim 1 of [B, C, H, W] (ConvNeXt's LayerNorm2d); weight and bias [C]")


def _window(ctx):
    win = _tuple(ctx.args["window"], 2)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in win):
        raise ShapeError(f"window must be a positive integer or [height, width], got {ctx.args['window']!r}")
    return win


def _window_partition(ctx):
    shape = ctx.shapes[0]
    if len(shape) != 4:
        raise ShapeError(f"window_partition expects [B, H, W, C], got {S.fmt(shape)}")
    wh, ww = _window(ctx)
    b, h, w, c = shape
    rows = S.exact_div(h, wh, f"window_partition: H of {S.fmt(shape)} against window {wh}")
    cols = S.exact_div(w, ww, f"window_partition: W of {S.fmt(shape)} against window {ww}")
    ctx.args["_window"] = (wh, ww)
    return (S.mul(S.mul(b, rows), cols), wh * ww, c)


register(OpDef("window_partition", _window_partition, build=lambda a: WindowPartition(a["_window"]),
               arg_names=("window",), required=("window",), in_dtype=None, category="shape",
               doc="[B, H, W, C] -> [B*nW, wh*ww, C]: non-overlapping windows (H, W multiples of the window)",
               shape_doc='x [B, H, W, C] -> [B * nW, wh * ww, C] (nW = (H / wh) * (W / ww); H, W multiples of the window)'))


def _window_reverse(ctx):
    named = dict(zip(ctx.slots or ("windows", "like"), ctx.shapes))
    windows, like = named["windows"], named["like"]
    wh, ww = _window(ctx)
    if len(windows) != 3 or windows[1] != wh * ww:
        raise ShapeError(f"window_reverse: windows must be [B*nW, {wh * ww}, C], got {S.fmt(windows)}")
    if len(like) < 3:
        raise ShapeError(f"window_reverse: `like` must be [B, H, W, ...], got {S.fmt(like)}")
    b, h, w = like[:3]
    n = S.mul(S.mul(b, S.exact_div(h, wh, "window_reverse: H")), S.exact_div(w, ww, "window_reverse: W"))
    if not S.same(n, windows[0]):
        raise S.mismatch(f"window_reverse: {S.fmt(windows)} does not hold the {n} windows of {S.fmt(like)}",
                         windows[0], n)
    ctx.args["_window"] = (wh, ww)
    return (b, h, w, windows[2])


register(OpDef("window_reverse", _window_reverse, build=lambda a: WindowReverse(a["_window"]),
               arg_names=("window",), required=("window",), arity=(2, 2), slots=("windows", "like"),
               required_slots=("windows", "like"), in_dtype=None,
               out_dtype=lambda ctx: ctx.dtypes[0], category="shape",
               doc="in: {windows, like}: [B*nW, wh*ww, C] windows back to [B, H, W, C] (B, H, W of `like`)",
               shape_doc='windows [B * nW, wh * ww, C] and like [B, H, W, C] -> [B, H, W, C]'))


def _relative_position_bias(ctx):
    wh, ww = _window(ctx)
    heads = ctx.args["heads"]
    if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1:
        raise ShapeError(f"heads must be a positive integer, got {heads!r}")
    ctx.args["_window"] = (wh, ww)
    return (heads, wh * ww, wh * ww)


register(OpDef("relative_position_bias", _relative_position_bias,
               build=lambda a: RelativePositionBias(a["_window"], a["heads"]), arg_names=("window", "heads"),
               required=("window", "heads"), arity=(0, 0), in_dtype=None, out_dtype=lambda ctx: "float32",
               macs=lambda ctx, out: 0, category="layer",
               doc="Swin's learned relative-position bias [heads, N, N] (N = wh*ww): a table "
                   "[(2wh-1)(2ww-1), heads] read through an index buffer built from the window size",
               shape_doc='no input -> [heads, N, N] (N = wh * ww)'))


def _shift_mask(ctx):
    shape = ctx.shapes[0]
    if len(shape) != 4 or not (S.is_static(shape[1]) and S.is_static(shape[2])):
        raise ShapeError(f"shift_mask reads H, W of a [B, H, W, C] map with static H and W, got {S.fmt(shape)}")
    wh, ww = _window(ctx)
    sh, sw = _tuple(ctx.args["shift"], 2)
    h, w = shape[1], shape[2]
    if h % wh or w % ww:
        raise ShapeError(f"shift_mask: {h}x{w} is not a whole number of {wh}x{ww} windows")
    if not (isinstance(sh, int) and isinstance(sw, int) and 0 < sh < wh and 0 < sw < ww):
        raise ShapeError(f"shift must be between 1 and the window size - 1, got {ctx.args['shift']!r}")
    ctx.args["_plan"] = ((h, w), (wh, ww), (sh, sw))
    return ((h // wh) * (w // ww), 1, wh * ww, wh * ww)


register(OpDef("shift_mask", _shift_mask, build=lambda a: ShiftMask(*a["_plan"]), arg_names=("window", "shift"),
               required=("window", "shift"), in_dtype=None, out_dtype=lambda ctx: "float32", category="layer",
               doc="Swin's shifted-window attention mask [nW, 1, N, N] (0 or -100) for the input's static H, W, "
                   "built once as a buffer; add it to scores reshaped to [B, nW, heads, N, N]",
               shape_doc='x [B, H, W, C] (H, W fixed) -> [nW, 1, N, N] (N = wh * ww)'))
