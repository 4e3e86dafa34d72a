"""Reductions and index ops: `norm`, `max`/`min`, `argmax`, `cumsum`, `gather`.

Arguments are torch's keywords (`p`, `dim`, `keepdim`). `max`/`min` with a `dim` have torch's two
results as ports `values` and `indices` (the node itself reads as `values`); without a `dim` they
reduce the whole tensor to a scalar, as `torch.max(x)` does.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from builder.shapes import rules as S
from builder.shapes.rules import ShapeError
from builder.ops.registry import OpDef, register


class Norm(nn.Module):
    """torch.linalg.vector_norm: the p-norm over `dim` (every element when dim is null)."""

    def __init__(self, p=2, dim=None, keepdim=False):
        super().__init__()
        self.p, self.dim, self.keepdim = p, dim, keepdim

    def forward(self, x):
        return torch.linalg.vector_norm(x, ord=self.p, dim=self.dim, keepdim=self.keepdim)

    def extra_repr(self):
        return f"p={self.p}, dim={self.dim}, keepdim={self.keepdim}"


class Extreme(nn.Module):
    """torch.max / torch.min: over everything, or over `dim` returning (values, indices)."""

    def __init__(self, kind: str, dim=None, keepdim=False):
        super().__init__()
        self.kind, self.dim, self.keepdim = kind, dim, keepdim
        self.fn = torch.max if kind == "max" else torch.min

    def forward(self, x):
        if self.dim is None:
            return self.fn(x)
        values, indices = self.fn(x, dim=self.dim, keepdim=self.keepdim)
        return values, indices

    def extra_repr(self):
        return f"torch.{self.kind}, dim={self.dim}, keepdim={self.keepdim}"


class ArgMax(nn.Module):
    def __init__(self, dim=None, keepdim=False):
        super().__init__()
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x):
        return torch.argmax(x, dim=self.dim, keepdim=self.keepdim)


class CumSum(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return torch.cumsum(x, dim=self.dim)


class Gather(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x, index):
        return torch.gather(x, self.dim, index)


def _keepdim(ctx):
    keep = ctx.args.get("keepdim", False)
    if not isinstance(keep, bool):
        raise ShapeError(f"keepdim must be true or false, got {keep!r}")
    return keep


def _reduced(shape, dims, keep):
    return tuple((1 if i in dims else d) for i, d in enumerate(shape) if keep or i not in dims)


def _norm(ctx):
    shape = ctx.shapes[0]
    p = ctx.args.get("p", 2)
    if p in ("inf", "-inf"):
        p = ctx.args["p"] = math.inf if p == "inf" else -math.inf
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise ShapeError(f"p must be a number, inf or -inf, got {p!r}")
    keep = _keepdim(ctx)
    dim = ctx.args.get("dim")
    if dim is None:
        return tuple(1 for _ in shape) if keep else ()
    dims = {S.norm_dim(d, len(shape)) for d in (dim if isinstance(dim, (list, tuple)) else [dim])}
    return _reduced(shape, dims, keep)


register(OpDef(name="norm", infer=_norm, build=lambda a: Norm(a.get("p", 2), a.get("dim"), a.get("keepdim", False)),
               arg_names=("p", "dim", "keepdim"), category="reduction",
               doc="torch.linalg.vector_norm(x, ord=p, dim, keepdim): the p-norm (default 2), inf/-inf allowed",
               shape_doc='the reduced dims removed (size 1 with keepdim); a scalar when `dim` is absent'))


def _extreme_ports(args):
    return ("values", "indices") if args.get("dim") is not None else ("out",)


def _extreme(ctx):
    shape = ctx.shapes[0]
    keep = _keepdim(ctx)
    dim = ctx.args.get("dim")
    if dim is None:
        if keep:
            raise ShapeError("keepdim needs a dim (without one the whole tensor reduces to a scalar)")
        return {"out": ()}
    out = _reduced(shape, {S.norm_dim(dim, len(shape))}, keep)
    return {"values": out, "indices": out}


def _extreme_dtype(ctx):
    return ctx.dtypes[0]


for _kind in ("max", "min"):
    register(OpDef(name=_kind, infer=_extreme,
                   build=lambda a, k=_kind: Extreme(k, a.get("dim"), a.get("keepdim", False)),
                   arg_names=("dim", "keepdim"), ports=_extreme_ports, in_dtype=None, out_dtype=_extreme_dtype,
                   category="reduction",
                   doc=f"torch.{_kind}: over everything, or over `dim` with ports values and indices (int64)",
                   shape_doc='a scalar; with `dim`, values and indices without `dim` (size 1 with keepdim)'))


def _argmax(ctx):
    shape = ctx.shapes[0]
    keep = _keepdim(ctx)
    dim = ctx.args.get("dim")
    if dim is None:
        return tuple(1 for _ in shape) if keep else ()
    return _reduced(shape, {S.norm_dim(dim, len(shape))}, keep)


register(OpDef(name="argmax", infer=_argmax, build=lambda a: ArgMax(a.get("dim"), a.get("keepdim", False)),
               arg_names=("dim", "keepdim"), in_dtype=None, out_dtype=lambda ctx: "int64", category="reduction",
               doc="torch.argmax(x, dim, keepdim): index of the largest value (int64)",
               shape_doc='`dim` removed (size 1 with keepdim), or a scalar without `dim`; int64'))


def _cumsum(ctx):
    S.norm_dim(ctx.args["dim"], len(ctx.shapes[0]))
    return ctx.shapes[0]


register(OpDef(name="cumsum", infer=_cumsum, build=lambda a: CumSum(a["dim"]), arg_names=("dim",),
               required=("dim",), in_dtype=None,
               out_dtype=lambda ctx: "int64" if ctx.dtypes[0] in ("bool", "int32") else ctx.dtypes[0],
               category="reduction", doc="torch.cumsum(x, dim): running sums along dim",
               shape_doc='the shape of x'))


def _gather(ctx):
    named = dict(zip(ctx.slots or ("x", "index"), zip(ctx.shapes, ctx.dtypes)))
    (x, _), (index, idtype) = named["x"], named["index"]
    if idtype != "int64":
        raise ShapeError(f"`index` must be an int64 tensor, got {idtype} (cast it with {{op: cast, dtype: int64}})")
    if len(index) != len(x):
        raise ShapeError(f"`index` {S.fmt(index)} must have the rank of x {S.fmt(x)}")
    dim = S.norm_dim(ctx.args["dim"], len(x))
    for i, (a, b) in enumerate(zip(index, x)):
        if i != dim and S.is_static(a) and S.is_static(b) and a > b:
            raise ShapeError(f"`index` {S.fmt(index)} is larger than x {S.fmt(x)} in dim {i}")
    return index


register(OpDef(name="gather", infer=_gather, build=lambda a: Gather(a["dim"]), arg_names=("dim",),
               required=("dim",), arity=(2, 2), slots=("x", "index"), required_slots=("x", "index"),
               in_dtype=None, out_dtype=lambda ctx: dict(zip(ctx.slots or ("x", "index"), ctx.dtypes))["x"],
               category="reduction",
               doc="torch.gather(x, dim, index): values of x at index along dim (in: {x, index})",
               shape_doc="the shape of index (the rank of x), x's dtype"))
