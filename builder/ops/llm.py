"""The parts of today's language models: `RMSNorm`, `rope`, `GLU`, `swiglu`, `QuickGELU`, and the constants
they need (`arange`, `alibi`): index and bias tables computed from arguments and dims, held as buffers
(never parameters, never in the state_dict), so a spec trained from scratch is the architecture it names.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from builder.ops.registry import OpDef, register
from builder.ops.registry import public_args as _public
from builder.ops.rotary import RotaryEmbedding, rope_check
from builder.shapes import rules as S
from builder.shapes.rules import ShapeError


# ---- RMSNorm ------------------------------------------------------------------------------------

def _rmsnorm(ctx):
    shape = ctx.shapes[0]
    ns = ctx.args.get("normalized_shape", -1)
    if ns in (None, -1, [-1]):
        ns = [shape[-1]] if shape else []
    ns = list(ns) if isinstance(ns, (list, tuple)) else [ns]
    if not ns or len(ns) > len(shape) or tuple(ns) != tuple(shape[-len(ns):]):
        raise ShapeError(f"normalized_shape {ns} does not match the trailing dims of {S.fmt(shape)}")
    if not all(S.is_static(d) for d in ns):
        raise ShapeError(f"RMSNorm needs static trailing dims, got {S.fmt(shape)}")
    eps = ctx.args.get("eps")
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0):
        raise ShapeError(f"eps must be a non-negative number, got {eps!r}")
    ctx.args["normalized_shape"] = ns
    return shape


class RMSNorm(nn.RMSNorm):
    """torch.nn.RMSNorm (same arguments, parameter and state_dict), computed off CUDA as the five ops of its
    definition: in torch 2.13 on CPU the fused kernel is about 1.7x slower than they are forward and 1.2x
    through backward (measured on [4, 128, 256]; benchmarks/llama_speed.py times the whole model)."""

    def forward(self, x):
        if x.is_cuda:
            return super().forward(x)
        dims = tuple(range(-len(self.normalized_shape), 0))
        eps = self.eps if self.eps is not None else torch.finfo(x.dtype).eps
        out = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps)
        return out * self.weight if self.weight is not None else out


register(OpDef("RMSNorm", _rmsnorm, build=lambda a: RMSNorm(**_public(a)), torch_class=nn.RMSNorm,
               inferred=("normalized_shape",),
               doc="torch.nn.RMSNorm: x / sqrt(mean(x^2) + eps) * weight over the last dim(s) (LLaMA, T5)"))


# ---- rope ---------------------------------------------------------------------------------------

def _rope(ctx):
    x = ctx.shapes[0]
    if len(x) == 4:
        heads, head_dim = x[2], x[3]
        if ctx.args.get("heads") not in (None, heads):
            raise ShapeError(f"heads={ctx.args['heads']} but the input {S.fmt(x)} has {heads} heads (dim 2)")
    elif len(x) == 3:
        heads = ctx.args.get("heads", 1)
        if not S.is_static(heads) or heads < 1 or not S.is_static(x[2]) or x[2] % heads:
            raise ShapeError(f"heads must be a positive integer dividing the feature dim of {S.fmt(x)}, "
                             f"got {heads!r}")
        head_dim = x[2] // heads
    else:
        raise ShapeError(f"rope expects [B, T, heads * head_dim] or [B, T, heads, head_dim], got {S.fmt(x)}")
    if not S.is_static(head_dim):
        raise ShapeError(f"rope needs a static head_dim, got {S.fmt(x)}")
    rope_check({k: ctx.args[k] for k in ("theta", "fraction", "interleaved") if k in ctx.args}, head_dim)
    ctx.args["head_dim"] = head_dim
    return x


register(OpDef("rope", _rope, build=lambda a: RotaryEmbedding(**_public(a)),
               arg_names=("heads", "theta", "fraction", "interleaved", "head_dim"), inferred=("head_dim",),
               category="position",
               doc="rotary position embedding per head of x [B, T, heads*d] or [B, T, heads, d]: theta, "
                   "fraction rotated, half-split (default) or interleaved pairs",
               shape_doc='the shape of x: [B, T, heads * head_dim] or [B, T, heads, head_dim]'))


# ---- gated units and GELU variants --------------------------------------------------------------

def _halves(ctx, what):
    shape = ctx.shapes[0]
    dim = S.norm_dim(ctx.args.get("dim", -1), len(shape))
    if not S.is_static(shape[dim]) or shape[dim] % 2:
        raise ShapeError(f"{what} halves dim {dim} of {S.fmt(shape)}: it must be static and even")
    return shape[:dim] + (shape[dim] // 2,) + shape[dim + 1:]


register(OpDef("GLU", lambda ctx: _halves(ctx, "GLU"), build=lambda a: nn.GLU(**_public(a)), torch_class=nn.GLU,
               category="activation",
               doc="torch.nn.GLU: a * sigmoid(b), a and b the two halves of `dim` (default -1)"))


class SwiGLU(nn.Module):
    """silu(gate) * up: from two inputs, or from the two halves of one input's last dim."""

    def forward(self, gate, up=None):
        if up is None:
            gate, up = gate.chunk(2, dim=-1)
        return F.silu(gate) * up


def _swiglu(ctx):
    if len(ctx.shapes) == 1:
        return _halves(ctx, "swiglu")
    named = dict(zip(ctx.slots or ("gate", "up"), ctx.shapes))
    gate, up = named["gate"], named["up"]
    if not S.same_shape(gate, up):
        raise ShapeError(f"gate {S.fmt(gate)} and up {S.fmt(up)} must have the same shape")
    return gate


register(OpDef("swiglu", _swiglu, build=lambda a: SwiGLU(), arg_names=(), arity=(1, 2), slots=("gate", "up"),
               required_slots=("gate", "up"), category="activation",
               doc="silu(gate) * up (LLaMA's MLP): in: {gate, up}, or one input whose last dim's halves are "
                   "gate and up",
               shape_doc='gate and up [..., D] -> [..., D]; one input [..., 2D] -> [..., D]'))


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the GELU approximation of OpenAI's CLIP."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


register(OpDef("QuickGELU", lambda ctx: ctx.shapes[0], build=lambda a: QuickGELU(), arg_names=(),
               category="activation",
               doc="x * sigmoid(1.702 x), CLIP's GELU (GELU's `approximate: tanh` is the other variant)",
               shape_doc='the shape of x'))


# ---- constants: index and bias tables -----------------------------------------------------------

INDEX_DTYPES = {"int64": torch.int64, "float32": torch.float32}


class Arange(nn.Module):
    """torch.arange(start, end, step): a buffer when `end` is a number; when `end` is ("dim", axis) it is
    read from the input at run time (a symbolic length stays dynamic in ONNX)."""

    def __init__(self, end, start=0, step=1, dtype="int64"):
        super().__init__()
        self.end, self.start, self.step, self.dtype = end, start, step, INDEX_DTYPES[dtype]
        if not isinstance(end, tuple):
            self.register_buffer("table", torch.arange(start, end, step, dtype=self.dtype), persistent=False)

    def forward(self, like=None):
        if not isinstance(self.end, tuple):
            return self.table
        return torch.arange(self.start, like.shape[self.end[1]], self.step, dtype=self.dtype, device=like.device)


def _arange(ctx):
    end, start, step = ctx.args["end"], ctx.args.get("start", 0), ctx.args.get("step", 1)
    dtype = ctx.args.get("dtype", "int64")
    if dtype not in INDEX_DTYPES:
        raise ShapeError(f"dtype must be one of {', '.join(INDEX_DTYPES)}, got {dtype!r}")
    for name, v in (("start", start), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ShapeError(f"{name} must be an integer, got {v!r}")
    if step < 1:
        raise ShapeError(f"step must be a positive integer, got {step}")
    if isinstance(end, str):
        if not ctx.shapes or end not in ctx.shapes[0]:
            given = S.fmt(ctx.shapes[0]) if ctx.shapes else "none given"
            raise ShapeError(f"end '{end}' must be a dim of the input `like` ({given})")
        if start < 0:
            raise ShapeError(f"start must be >= 0 with a dim as end, got {start}")
        ctx.args["_end"] = ("dim", ctx.shapes[0].index(end))
        size = end if start == 0 and step == 1 else S.window_out(end, start + 1, step, 0, 1)
        return (size,)
    if isinstance(end, bool) or not isinstance(end, int):
        raise ShapeError(f"end must be an integer or a dim name of the input, got {end!r}")
    n = max(0, -(-(end - start) // step))
    if n < 1:
        raise ShapeError(f"arange({start}, {end}, {step}) is empty")
    ctx.args["_end"] = end
    return (n,)


register(OpDef("arange", _arange, build=lambda a: Arange(a["_end"], a.get("start", 0), a.get("step", 1),
                                                             a.get("dtype", "int64")),
               arg_names=("end", "start", "step", "dtype"), required=("end",), arity=(0, 1), in_dtype=None,
               out_dtype=lambda ctx: ctx.args.get("dtype", "int64"), category="position",
               doc="start, start+step, ... < end (int64, or dtype: float32): a buffer, or with in: x and "
                   "`end: T` read from x's dim T at run time",
               shape_doc='no input -> [n] (n = ceil((end - start) / step)); with `in: x` and `end: T`, [T] read from x'))


def alibi_slopes(heads: int) -> torch.Tensor:
    """Press et al. 2022's head slopes: a geometric sequence from 2^(-8/n), n the power of two at or below
    `heads`; the heads past n take every other slope of 2n (as in BLOOM and the paper's code)."""
    def powers(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start ** i for i in range(n)]
    n = 2 ** math.floor(math.log2(heads))
    slopes = powers(n)
    if n < heads:
        slopes += powers(2 * n)[0::2][: heads - n]
    return torch.tensor(slopes, dtype=torch.float32)


class Alibi(nn.Module):
    """ALiBi's additive attention bias [heads, T, T]: -slope_h * (i - j) for key j at or before query i."""

    def __init__(self, heads: int):
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(heads).reshape(heads, 1, 1), persistent=False)

    def forward(self, x):
        pos = torch.arange(x.shape[1], device=x.device, dtype=torch.float32)
        return self.slopes * (pos[None, :] - pos[:, None])


def _alibi(ctx):
    x = ctx.shapes[0]
    heads = ctx.args["heads"]
    if len(x) < 2:
        raise ShapeError(f"alibi reads T from dim 1 of its input [B, T, ...], got {S.fmt(x)}")
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
        raise ShapeError(f"heads must be a positive integer, got {heads!r}")
    return (heads, x[1], x[1])


register(OpDef("alibi", _alibi, build=lambda a: Alibi(a["heads"]), arg_names=("heads",), required=("heads",),
               in_dtype=None, out_dtype=lambda ctx: "float32", category="position",
               doc="ALiBi bias [heads, T, T] (slopes a buffer from `heads`, T read from dim 1 of the input): "
                   "an attention's `bias` input",
               shape_doc='x [B, T, ...] -> [heads, T, T]'))
