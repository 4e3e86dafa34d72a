"""Padded sequences: `sequence_mask` (lengths -> [B, T] bool) and `last_valid` (each sequence's last step).

A GRU over a padded batch returns an output at every step; `last_valid` takes, per sequence, the
output at step `length - 1` (where the sequence really ended), and `sequence_mask` gives the mask a
`masked_fill` or an attention needs. Both compute with `arange`/`gather`, so T stays dynamic in ONNX.
"""
from __future__ import annotations

import torch
from torch import nn

from builder.shapes import rules as S
from builder.shapes.rules import ShapeError
from builder.ops.registry import OpDef, register


class SequenceMask(nn.Module):
    """[B] lengths -> [B, T] bool, True where the step index is below the length."""

    def __init__(self, max_len: int | None = None):
        super().__init__()
        self.max_len = max_len

    def forward(self, lengths, like=None):
        t = like.shape[1] if like is not None else self.max_len
        steps = torch.arange(t, device=lengths.device)
        return steps.unsqueeze(0) < lengths.unsqueeze(1)


class LastValid(nn.Module):
    """x [B, T, ...] and lengths [B] -> x[b, lengths[b] - 1, ...] (step 0 for an empty sequence)."""

    def forward(self, x, lengths):
        index = (lengths.to(torch.int64) - 1).clamp(min=0)
        index = index.reshape([-1, 1] + [1] * (x.dim() - 2)).expand([-1, 1] + list(x.shape[2:]))
        return torch.gather(x, 1, index).squeeze(1)


def _named(ctx, default):
    return dict(zip(ctx.slots or default, zip(ctx.shapes, ctx.dtypes)))


def _lengths(shape_dtype, what):
    shape, dtype = shape_dtype
    if len(shape) != 1:
        raise ShapeError(f"{what}: lengths must be [B], got {S.fmt(shape)}")
    if not dtype.startswith("int"):
        raise ShapeError(f"{what}: lengths must be integers (dtype: int64), got {dtype}")
    return shape


def _sequence_mask(ctx):
    named = _named(ctx, ("lengths", "like"))
    lengths = _lengths(named["lengths"], "sequence_mask")
    max_len = ctx.args.get("max_len")
    if ("like" in named) == (max_len is not None):
        raise ShapeError("sequence_mask needs exactly one of `max_len` or an input `like` (whose dim 1 is T)")
    if max_len is not None:
        if not S.is_static(max_len) or max_len < 1:
            raise ShapeError(f"max_len must be a positive integer, got {max_len!r}")
        return (lengths[0], max_len)
    like = named["like"][0]
    if len(like) < 2:
        raise ShapeError(f"sequence_mask: `like` must be at least [B, T], got {S.fmt(like)}")
    return (lengths[0], like[1])


register(OpDef(name="sequence_mask", infer=_sequence_mask, build=lambda a: SequenceMask(a.get("max_len")),
               arg_names=("max_len",), arity=(1, 2), slots=("lengths", "like"), required_slots=("lengths",),
               in_dtype=None, out_dtype=lambda ctx: "bool", category="sequence",
               doc="[B] int lengths -> [B, T] bool (True = a real step); T from `max_len` or in: {lengths, like: x}",
               shape_doc='lengths [B] -> [B, T] bool'))


def _last_valid(ctx):
    named = _named(ctx, ("x", "lengths"))
    x = named["x"][0]
    lengths = _lengths(named["lengths"], "last_valid")
    if len(x) < 2:
        raise ShapeError(f"last_valid: x must be [B, T, ...], got {S.fmt(x)}")
    if S.broadcast([x[:1], lengths], "match the batch of") != x[:1]:
        raise ShapeError(f"last_valid: lengths {S.fmt(lengths)} and x {S.fmt(x)} differ in batch")
    return x[:1] + x[2:]


register(OpDef(name="last_valid", infer=_last_valid, build=lambda a: LastValid(), arg_names=(), arity=(2, 2),
               slots=("x", "lengths"), required_slots=("x", "lengths"), in_dtype=None,
               out_dtype=lambda ctx: _named(ctx, ("x", "lengths"))["x"][1], category="sequence",
               doc="in: {x, lengths}: x [B, T, ...] at each sequence's last valid step (lengths - 1) -> [B, ...]",
               shape_doc='x [B, T, ...] and lengths [B] -> [B, ...]'))
