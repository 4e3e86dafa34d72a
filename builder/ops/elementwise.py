"""Element-wise ops: math functions, comparisons, logic, `where`, `cast` and `masked_fill`.

Each is a thin module over the torch function of the same name (`torch.exp`, `torch.eq`, ...), with
the keyword arguments torch itself uses (`exponent`, `min`/`max`, `value`), so a node of the spec
reads like the torch call it stands for and keeps its spec path in fx, ONNX and the pictures.
"""
from __future__ import annotations

import torch
from torch import nn

from builder.shapes import rules as S
from builder.shapes.rules import ShapeError
from builder.ops.registry import OpDef, register

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32, "bool": torch.bool}


class TorchFunction(nn.Module):
    """Calls `torch.<name>(*inputs, **kwargs)`; the name comes from the op table, never from a spec."""

    def __init__(self, name: str, **kwargs):
        super().__init__()
        self.name, self.kwargs = name, kwargs
        self.fn = getattr(torch, name)

    def forward(self, *xs):
        return self.fn(*xs, **self.kwargs)

    def extra_repr(self):
        return ", ".join([f"torch.{self.name}"] + [f"{k}={v!r}" for k, v in self.kwargs.items()])


class Compare(nn.Module):
    """`torch.<cmp>(a, b)` or `torch.<cmp>(x, value)`: a bool tensor."""

    def __init__(self, name: str, value=None):
        super().__init__()
        self.name, self.value = name, value
        self.fn = getattr(torch, name)

    def forward(self, a, b=None):
        return self.fn(a, self.value if b is None else b)

    def extra_repr(self):
        return f"torch.{self.name}" + (f", value={self.value!r}" if self.value is not None else "")


class Where(nn.Module):
    def forward(self, cond, a, b):
        return torch.where(cond, a, b)


class Cast(nn.Module):
    def __init__(self, dtype: str):
        super().__init__()
        self.dtype = dtype

    def forward(self, x):
        return x.to(DTYPES[self.dtype])

    def extra_repr(self):
        return f"dtype={self.dtype}"


class MaskedFill(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x, mask):
        return x.masked_fill(mask, self.value)

    def extra_repr(self):
        return f"value={self.value!r}"


def _number(ctx, name, required=True):
    v = ctx.args.get(name)
    if v is None and not required:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ShapeError(f"{name} must be a number, got {v!r}")
    return v


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat"))


def _same_kind(ctx, what):
    kinds = {"bool" if d == "bool" else "float" if _is_float(d) else "int" for d in ctx.dtypes}
    if len(kinds) > 1 or len(set(ctx.dtypes)) > 1:
        raise ShapeError(f"cannot {what} tensors of different dtypes: {', '.join(ctx.dtypes)} (cast one first)")
    return ctx.dtypes[0]


def _elementwise(name, arg_names=(), required=(), in_dtype="float", infer=None, build=None, **kw):
    """An element-wise function: no multiply-accumulates (MACs count products: like add, mul and the
    activations, these count 0, as torch's FlopCounterMode does)."""
    def default_build(a):
        return TorchFunction(name, **{k: a[k] for k in arg_names if a.get(k) is not None})
    register(OpDef(name=name, infer=infer or (lambda ctx: ctx.shapes[0]), build=build or default_build,
                   arg_names=arg_names, required=required, in_dtype=in_dtype, category="elementwise", **kw))


for _name, _doc in (("exp", "e**x"), ("log", "natural logarithm"), ("sqrt", "square root"),
                    ("rsqrt", "1 / sqrt(x)")):
    _elementwise(_name, doc=f"torch.{_name}: {_doc}, element-wise",
                 shape_doc='the shape and dtype of x')
_elementwise("abs", in_dtype=None, doc="torch.abs: |x|, element-wise",
             shape_doc='the shape and dtype of x')
_elementwise("neg", in_dtype=None, doc="torch.neg: -x, element-wise",
             shape_doc='the shape and dtype of x')


def _pow(ctx):
    _number(ctx, "exponent")
    return ctx.shapes[0]


_elementwise("pow", ("exponent",), ("exponent",), infer=_pow, doc="torch.pow(x, exponent)",
             shape_doc='the shape and dtype of x')


def _clamp(ctx):
    lo, hi = _number(ctx, "min", False), _number(ctx, "max", False)
    if lo is None and hi is None:
        raise ShapeError("clamp needs `min`, `max` or both")
    if lo is not None and hi is not None and lo > hi:
        raise ShapeError(f"clamp min {lo} is above max {hi}")
    return ctx.shapes[0]


_elementwise("clamp", ("min", "max"), infer=_clamp, in_dtype=None, doc="torch.clamp(x, min, max)",
             shape_doc='the shape and dtype of x')


# ---- comparisons and logic ----------------------------------------------------------------------

def _compare(ctx):
    has_value = "value" in ctx.args
    if len(ctx.shapes) == 2:
        if has_value:
            raise ShapeError("compare two inputs or one input with `value`, not both")
        if "bool" in ctx.dtypes and set(ctx.dtypes) != {"bool"}:
            raise ShapeError(f"cannot compare {ctx.dtypes[0]} with {ctx.dtypes[1]}")
        return S.broadcast(ctx.shapes, "compare")
    if not has_value:
        raise ShapeError("with one input, give the `value` to compare it with (or a second input)")
    v = ctx.args["value"]
    if not isinstance(v, (int, float)):
        raise ShapeError(f"value must be a number or true/false, got {v!r}")
    return ctx.shapes[0]


_CMP_DOC = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
for _name, _sym in _CMP_DOC.items():
    register(OpDef(name=_name, infer=_compare, build=lambda a, n=_name: Compare(n, a.get("value")),
                   arg_names=("value",), arity=(1, 2), in_dtype=None, out_dtype=lambda ctx: "bool",
                   category="elementwise", doc=f"torch.{_name}: a {_sym} b (or x {_sym} value), a bool tensor",
                   shape_doc='a and b broadcast together (or the shape of x), bool'))


def _logical(ctx):
    return S.broadcast(ctx.shapes, "combine") if len(ctx.shapes) > 1 else ctx.shapes[0]


for _name, _n in (("logical_and", 2), ("logical_or", 2), ("logical_not", 1)):
    register(OpDef(name=_name, infer=_logical, build=lambda a, n=_name: TorchFunction(n), arg_names=(),
                   arity=(_n, _n), in_dtype=None, out_dtype=lambda ctx: "bool", category="elementwise",
                   doc=f"torch.{_name}: element-wise logic (any dtype; non-zero is true), a bool tensor",
                   shape_doc='the inputs broadcast together, bool'))


def _where(ctx):
    named = dict(zip(ctx.slots or ("cond", "a", "b"), zip(ctx.shapes, ctx.dtypes)))
    if named["cond"][1] != "bool":
        raise ShapeError(f"`cond` must be a bool tensor (a comparison), got {named['cond'][1]}")
    if named["a"][1] != named["b"][1]:
        raise ShapeError(f"`a` and `b` must have the same dtype, got {named['a'][1]} and {named['b'][1]}")
    return S.broadcast([s for s, _ in named.values()], "select between")


def _where_dtype(ctx):
    return dict(zip(ctx.slots or ("cond", "a", "b"), ctx.dtypes))["a"]


register(OpDef(name="where", infer=_where, build=lambda a: Where(), arg_names=(), arity=(3, 3),
               slots=("cond", "a", "b"), required_slots=("cond", "a", "b"), in_dtype=None,
               out_dtype=_where_dtype, category="elementwise",
               doc="torch.where(cond, a, b): a where cond is true, else b (in: {cond, a, b})",
               shape_doc='cond, a and b broadcast together; the dtype of a and b'))


def _cast(ctx):
    if ctx.args["dtype"] not in DTYPES:
        raise ShapeError(f"dtype must be one of {', '.join(DTYPES)}, got {ctx.args['dtype']!r}")
    return ctx.shapes[0]


register(OpDef(name="cast", infer=_cast, build=lambda a: Cast(a["dtype"]), arg_names=("dtype",),
               required=("dtype",), in_dtype=None, out_dtype=lambda ctx: ctx.args["dtype"], category="elementwise",
               doc="x.to(dtype): float32, float64, float16, bfloat16, int64, int32 or bool",
               shape_doc='the shape of x, in `dtype`'))


def _masked_fill(ctx):
    named = dict(zip(ctx.slots or ("x", "mask"), zip(ctx.shapes, ctx.dtypes)))
    x, mask = named["x"], named["mask"]
    if mask[1] != "bool":
        raise ShapeError(f"`mask` must be a bool tensor (a comparison), got {mask[1]}")
    _number(ctx, "value")
    if S.broadcast([x[0], mask[0]], "masked_fill") != tuple(x[0]):
        raise ShapeError(f"mask {S.fmt(mask[0])} does not broadcast to x {S.fmt(x[0])}")
    return x[0]


register(OpDef(name="masked_fill", infer=_masked_fill, build=lambda a: MaskedFill(a["value"]),
               arg_names=("value",), required=("value",), arity=(2, 2), slots=("x", "mask"),
               required_slots=("x", "mask"), in_dtype=None,
               out_dtype=lambda ctx: dict(zip(ctx.slots or ("x", "mask"), ctx.dtypes))["x"], category="elementwise",
               doc="x.masked_fill(mask, value): value where the bool mask is true (in: {x, mask})",
               shape_doc='the shape and dtype of x (mask broadcast to it)'))
