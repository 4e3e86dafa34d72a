"""Rotary position embedding (RoPE, Su et al. 2021): the `rope` op and the `rope:` option of `attention`.

Each pair of features of a head is rotated by an angle position * theta^(-2j/rotary_dims). The inverse
frequencies are a buffer computed once from the arguments (never a parameter, never in the state_dict);
the angles are computed per call from positions offset .. offset + T - 1, so T stays dynamic in ONNX and
a key/value cache passes its past length as the offset. Two layouts pair the features differently:

    half-split  (GPT-NeoX, Hugging Face LLaMA): feature j pairs with j + rotary_dims / 2
    interleaved (GPT-J, Meta's LLaMA):           feature 2j pairs with 2j + 1

`fraction` < 1 rotates only the first fraction of each head's features (GPT-NeoX's rotary_pct); the rest
pass through unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

from builder.shapes.rules import ShapeError

ROPE_KEYS = ("theta", "fraction", "interleaved")
_NUMBER = {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string", "pattern": r"\$\{.*\}"}]}
ROPE_SCHEMA = {  # attention's `rope:` option in the JSON Schema
    "type": "object", "additionalProperties": False,
    "description": "rotary position embedding of queries and keys per head",
    "properties": {
        "theta": {**_NUMBER, "description": "base of the rotation frequencies (default 10000)"},
        "fraction": {**_NUMBER, "description": "share of each head's features rotated (default 1.0)"},
        "interleaved": {"anyOf": [{"type": "boolean"}, {"type": "string", "pattern": r"\$\{.*\}"}],
                        "description": "pairs 2j, 2j+1 (GPT-J) instead of j, j + d/2 (default false)"}}}


def rotary_dims(head_dim: int, fraction: float) -> int:
    """How many features of a head rotate: fraction * head_dim, rounded down to an even number."""
    return int(head_dim * fraction) // 2 * 2


def inverse_frequencies(dims: int, theta: float) -> torch.Tensor:
    """theta^(-2j/dims) for j < dims/2, computed as Hugging Face does (int64 arange, then float)."""
    return 1.0 / (theta ** (torch.arange(0, dims, 2, dtype=torch.int64).float() / dims))


def cos_sin(inv_freq: torch.Tensor, t, offset, interleaved: bool, ndim: int, time_axis: int):
    """cos and sin of the angles at positions offset .. offset + t - 1, shaped to broadcast over a tensor of
    `ndim` dims whose time axis is `time_axis` and whose last dim holds the rotated features."""
    positions = torch.arange(t, device=inv_freq.device, dtype=torch.int64) + offset
    angles = positions.float()[:, None] * inv_freq[None, :]          # [T, rot/2]
    if interleaved:
        angles = angles.repeat_interleave(2, dim=-1)
    else:
        angles = torch.cat([angles, angles], dim=-1)
    view = [1] * ndim
    view[time_axis], view[-1] = t, angles.shape[-1]
    return angles.cos().reshape(view), angles.sin().reshape(view)


def apply(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """x rotated by the angles whose cos and sin are given (from `cos_sin`); features past the rotated
    ones pass through."""
    rot = cos.shape[-1]
    x_rot, x_pass = (x, None) if rot == x.shape[-1] else (x[..., :rot], x[..., rot:])
    if interleaved:
        pairs = x_rot.unflatten(-1, (rot // 2, 2))
        turned = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    else:
        half = rot // 2
        turned = torch.cat([-x_rot[..., half:], x_rot[..., :half]], dim=-1)
    out = x_rot * cos + turned * sin
    return out if x_pass is None else torch.cat([out, x_pass], dim=-1)


def rotate(x: torch.Tensor, inv_freq: torch.Tensor, offset, interleaved: bool, time_axis: int) -> torch.Tensor:
    """x [..., T (at time_axis), ..., head_dim] rotated at positions offset .. offset + T - 1."""
    cos, sin = cos_sin(inv_freq, x.shape[time_axis], offset, interleaved, x.dim(), time_axis)
    return apply(x, cos, sin, interleaved)


def rope_check(rope, head_dim):
    """The `rope:` option (or the `rope` op's arguments): known keys, an even number of rotated features."""
    if not isinstance(rope, dict) or set(rope) - set(ROPE_KEYS):
        raise ShapeError(f"rope must be a mapping of {', '.join(ROPE_KEYS)}, got {rope!r}")
    theta, fraction = rope.get("theta", 10000.0), rope.get("fraction", 1.0)
    for name, value in (("theta", theta), ("fraction", fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ShapeError(f"rope {name} must be a positive number, got {value!r}")
    if fraction > 1 or rotary_dims(head_dim, fraction) < 2:
        raise ShapeError(f"rope fraction {fraction} of head_dim {head_dim} rotates no pair of features "
                         "(it must be at most 1 and leave at least 2 features)")
    if not isinstance(rope.get("interleaved", False), bool):
        raise ShapeError(f"rope interleaved must be true or false, got {rope['interleaved']!r}")


class RotaryEmbedding(nn.Module):
    """The `rope` op: x [B, T, heads * head_dim] (or [B, T, heads, head_dim]) rotated per head.

    `forward(x, offset)`: positions start at `offset` (0 for a whole sequence, the past length in a cached
    decode step)."""

    def __init__(self, head_dim: int, heads: int | None = None, theta: float = 10000.0, fraction: float = 1.0,
                 interleaved: bool = False):
        super().__init__()
        self.head_dim, self.heads, self.theta = head_dim, heads, theta
        self.fraction, self.interleaved = fraction, interleaved
        self.register_buffer("inv_freq", inverse_frequencies(rotary_dims(head_dim, fraction), theta),
                             persistent=False)

    def pair(self, q, k, offset=0):
        """Queries and keys [B, T, heads, head_dim] of the same positions, rotated with one cos/sin table."""
        cos, sin = cos_sin(self.inv_freq, q.shape[1], offset, self.interleaved, 4, 1)
        return apply(q, cos, sin, self.interleaved), apply(k, cos, sin, self.interleaved)

    def forward(self, x, offset=0):
        if x.dim() == 4:  # [B, T, heads, head_dim]
            return rotate(x, self.inv_freq, offset, self.interleaved, 1)
        b, t, d = x.shape
        heads = x.reshape(b, t, d // self.head_dim, self.head_dim)
        return rotate(heads, self.inv_freq, offset, self.interleaved, 1).reshape(b, t, d)

    def extra_repr(self):
        return (f"head_dim={self.head_dim}, theta={self.theta}, fraction={self.fraction}, "
                f"interleaved={self.interleaved}")
