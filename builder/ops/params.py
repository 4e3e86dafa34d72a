"""A free learned tensor (`param`, no input) and `expand` (size-1 dims broadcast to named sizes).

ViT's class token is `{op: param, shape: [1, 1, 768], init: zeros}` put in front of the patch tokens
by a broadcasting `concat`; `expand` is the general tool (`shape: [B, -1, -1]`, where `B` is read at
run time from whichever input has that symbolic dim, so it stays dynamic in ONNX).
"""
from __future__ import annotations

import torch
from torch import nn

from builder.shapes import rules as S
from builder.shapes.rules import ShapeError
from builder.ops.registry import OpDef, register

MAX_PARAM_DIMS = 8


class Param(nn.Module):
    """A learned tensor of a fixed shape (zeros until an `init:` or a checkpoint says otherwise)."""

    def __init__(self, shape):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(*shape))

    def forward(self):
        return self.weight


class Expand(nn.Module):
    """x.expand(sizes), where each size is -1 (keep), a number, or ("dim", input, axis): a size read at run
    time from one of the node's inputs (so symbolic dims such as B stay dynamic)."""

    def __init__(self, sizes):
        super().__init__()
        self.sizes = list(sizes)

    def forward(self, x, *others):
        xs = (x,) + others
        return x.expand([xs[s[1]].shape[s[2]] if isinstance(s, tuple) else s for s in self.sizes])


def _param(ctx):
    shape = ctx.args["shape"]
    if not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= MAX_PARAM_DIMS or \
            not all(S.is_static(d) and d > 0 for d in shape):
        raise ShapeError(f"shape must be a list of 1 to {MAX_PARAM_DIMS} positive sizes, got {shape!r}")
    return tuple(shape)


register(OpDef(name="param", infer=_param, build=lambda a: Param(a["shape"]), arg_names=("shape",),
               required=("shape",), arity=(0, 0), in_dtype=None, out_dtype=lambda ctx: "float32",
               category="layer",
               doc="a free learned tensor of `shape` (no input; zeros unless `init:`), e.g. a class token",
               shape_doc='`shape` (static sizes), no input'))


def _expand(ctx):
    x = ctx.shapes[0]
    target = ctx.args["shape"]
    if not isinstance(target, (list, tuple)) or len(target) < len(x):
        raise ShapeError(f"shape must be a list of at least {len(x)} entries (the input is {S.fmt(x)}), "
                         f"got {target!r}")
    lead = len(target) - len(x)
    out, runtime = [], []
    for i, want in enumerate(target):
        have = x[i - lead] if i >= lead else None
        if want == -1:
            if have is None:
                raise ShapeError(f"shape entry {i} is -1, but the input {S.fmt(x)} has no dim there to keep")
            out.append(have)
            runtime.append(-1)
            continue
        if isinstance(want, str):
            where = next(((k, s.index(want)) for k, s in enumerate(ctx.shapes) if want in s), None)
            if where is None:
                raise ShapeError(f"'{want}' is not a dim of any input ({', '.join(S.fmt(s) for s in ctx.shapes)})")
            size, rt = want, ("dim", where[0], where[1])
        elif S.is_static(want) and want > 0:
            size, rt = want, want
        else:
            raise ShapeError(f"shape entries must be positive sizes, -1 or dim names, got {want!r}")
        if have is not None and have != 1 and have != size:
            raise ShapeError(f"cannot expand dim {i - lead} of {S.fmt(x)} (size {have}) to {size}: only size-1 "
                             f"dims expand")
        out.append(size)
        runtime.append(rt)
    ctx.args["_sizes"] = runtime
    return tuple(out)


register(OpDef(name="expand", infer=_expand, build=lambda a: Expand(a["_sizes"]), arg_names=("shape",),
               required=("shape",), arity=(1, None), in_dtype=None, category="shape",
               doc="x.expand(shape): size-1 dims to `shape` (-1 keeps; a dim name such as B is read from any input)",
               shape_doc="`shape`, each -1 keeping the input's size, each name read from the inputs' dims"))
