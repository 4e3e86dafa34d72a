"""More torch.nn layers: 3-D convolution/pooling/normalisation, resampling, padding and distances.

They reuse the shape rules of `layers.py` (the conv, pool and batch-norm rules are written for any
number of spatial dims) and torch's own constructor signatures for argument checks.
"""
from __future__ import annotations

import math

from torch import nn

from builder.shapes import rules as S
from builder.shapes.rules import ShapeError
from builder.ops.layers import _batchnorm, _conv, _conv_macs, _numel, _pool, _rank, _tuple, layer

layer("Conv3d", nn.Conv3d, _conv(3), inferred=("in_channels",), required=("out_channels", "kernel_size"),
      macs=_conv_macs(3))
layer("MaxPool3d", nn.MaxPool3d, _pool(3), required=("kernel_size",))
layer("BatchNorm3d", nn.BatchNorm3d, _batchnorm((5,)), inferred=("num_features",))


def _instancenorm(ctx):
    shape = _rank(ctx, 3, 4, what="InstanceNorm2d")
    c = shape[-3]
    if not S.is_static(c):
        raise ShapeError(f"InstanceNorm2d needs a static channel dim, got {S.fmt(shape)}")
    h, w = shape[-2:]
    if S.is_static(h) and S.is_static(w) and h * w == 1:
        raise ShapeError(f"InstanceNorm2d needs more than one spatial element per channel, got {S.fmt(shape)}")
    ctx.args["num_features"] = c
    return shape


layer("InstanceNorm2d", nn.InstanceNorm2d, _instancenorm, inferred=("num_features",))


# ---- resampling and padding ---------------------------------------------------------------------

_MODE_RANK = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


def _upsample(ctx):
    shape = _rank(ctx, 3, 4, 5, what="Upsample")
    nd = len(shape) - 2
    mode = ctx.args.get("mode", "nearest")
    if mode not in ("nearest", "nearest-exact", *_MODE_RANK):
        raise ShapeError(f"mode must be one of nearest, nearest-exact, {', '.join(_MODE_RANK)}; got {mode!r}")
    if _MODE_RANK.get(mode, nd) != nd:
        raise ShapeError(f"mode '{mode}' needs {_MODE_RANK[mode]} spatial dim(s); the input {S.fmt(shape)} has {nd}")
    if ctx.args.get("align_corners") is not None and mode not in _MODE_RANK:
        raise ShapeError(f"align_corners applies to the interpolating modes, not to '{mode}'")
    size, factor = ctx.args.get("size"), ctx.args.get("scale_factor")
    if (size is None) == (factor is None):
        raise ShapeError("Upsample needs exactly one of `size` or `scale_factor`")
    if size is not None:
        sizes = _tuple(size, nd)
        if not all(S.is_static(v) and v > 0 for v in sizes):
            raise ShapeError(f"size must be positive integers, got {size!r}")
        return shape[:2] + tuple(sizes)
    factors = _tuple(factor, nd)
    if not all(isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in factors):
        raise ShapeError(f"scale_factor must be positive numbers, got {factor!r}")
    out = []
    for n, f in zip(shape[2:], factors):
        if S.is_static(n):
            out.append(math.floor(n * f))
        elif float(f).is_integer():
            out.append(S.mul(n, int(f)))
        else:
            raise ShapeError(f"a fractional scale_factor ({f}) needs static spatial sizes, got {S.fmt(shape)}; "
                             "give `size`, or an integer factor")
    return shape[:2] + tuple(out)


layer("Upsample", nn.Upsample, _upsample, in_dtype="float", category="shape")


def _pixel_shuffle(ctx):
    shape = _rank(ctx, 3, 4, what="PixelShuffle")
    r = ctx.args["upscale_factor"]
    if not S.is_static(r) or r < 1:
        raise ShapeError(f"upscale_factor must be a positive integer, got {r!r}")
    c, h, w = shape[-3:]
    if not S.is_static(c) or c % (r * r):
        raise ShapeError(f"channels {c} of {S.fmt(shape)} are not divisible by upscale_factor**2 = {r * r}")
    return shape[:-3] + (c // (r * r), S.mul(h, r), S.mul(w, r))


layer("PixelShuffle", nn.PixelShuffle, _pixel_shuffle, required=("upscale_factor",), in_dtype=None, category="shape")


def _zero_pad(ctx):
    shape = _rank(ctx, 3, 4, what="ZeroPad2d")
    pad = ctx.args["padding"]
    left, right, top, bottom = _tuple(pad, 4)
    if not all(S.is_static(p) for p in (left, right, top, bottom)):
        raise ShapeError(f"padding must be an integer or [left, right, top, bottom], got {pad!r}")
    return shape[:-2] + (S.add(shape[-2], top + bottom), S.add(shape[-1], left + right))


layer("ZeroPad2d", nn.ZeroPad2d, _zero_pad, required=("padding",), in_dtype=None, category="shape")


# ---- distances ----------------------------------------------------------------------------------

def _pairwise(ctx):
    a, b = ctx.shapes
    both = S.broadcast([a, b], "compare")
    if not both:
        raise ShapeError("PairwiseDistance needs inputs of rank >= 1")
    keep = ctx.args.get("keepdim", False)
    return both[:-1] + ((1,) if keep else ())


layer("PairwiseDistance", nn.PairwiseDistance, _pairwise, arity=(2, 2), category="distance",
      macs=lambda ctx, out: _numel(S.broadcast(ctx.shapes)))


def _cosine(ctx):
    both = S.broadcast(ctx.shapes, "compare")
    dim = S.norm_dim(ctx.args.get("dim", 1), len(both))
    return both[:dim] + both[dim + 1:]


layer("CosineSimilarity", nn.CosineSimilarity, _cosine, arity=(2, 2), category="distance",
      macs=lambda ctx, out: 3 * _numel(S.broadcast(ctx.shapes)))
