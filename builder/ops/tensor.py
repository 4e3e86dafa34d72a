"""Tensor ops: arithmetic, joining, reshaping, slicing and reductions."""
from __future__ import annotations

from builder.shapes import rules as S
from builder.shapes.rules import ShapeError
from builder.ops import modules as M
from builder.ops.registry import OpDef, register


def tensor_op(name, infer, build, arg_names=(), required=(), arity=(1, 1), in_dtype=None, category="tensor",
              **kw):
    return register(OpDef(name=name, infer=infer, build=build, arg_names=arg_names, required=required,
                          arity=arity, in_dtype=in_dtype, category=category, **kw))


def _common_dtype(ctx):
    kinds = set(ctx.dtypes)
    if len(kinds) > 1:
        raise ShapeError(f"inputs have different dtypes: {', '.join(sorted(kinds))}")
    return ctx.dtypes[0]


def _elementwise(verb, most=None):
    def infer(ctx):
        _common_dtype(ctx)
        value = ctx.args.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ShapeError(f"value must be a number, got {value!r}")
        n = len(ctx.shapes) + (value is not None)
        if n < 2 or (most is not None and n > most):
            want = "two operands" if most == 2 else "at least two operands"
            raise ShapeError(f"{verb} needs {want}: inputs, or one input and a scalar `value`")
        return S.broadcast(ctx.shapes, verb)
    return infer


_VALUE_DOC = "; `value:` a scalar operand (x {} value), one input"
tensor_op("add", _elementwise("add"), lambda a: M.Add(a.get("value")), arg_names=("value",), arity=(1, None),
          out_dtype=_common_dtype, doc="sum of the inputs (broadcast)" + _VALUE_DOC.format("+"),
          shape_doc="the inputs broadcast together (torch's rules); a symbolic dim must match or be 1")
tensor_op("mul", _elementwise("multiply"), lambda a: M.Mul(a.get("value")), arg_names=("value",), arity=(1, None),
          out_dtype=_common_dtype, doc="product of the inputs (broadcast)" + _VALUE_DOC.format("*"),
          shape_doc="the inputs broadcast together")
tensor_op("sub", _elementwise("subtract", 2), lambda a: M.Sub(a.get("value")), arg_names=("value",), arity=(1, 2),
          out_dtype=_common_dtype, doc="a - b (broadcast)" + _VALUE_DOC.format("-"),
          shape_doc="a and b broadcast together")
tensor_op("div", _elementwise("divide", 2), lambda a: M.Div(a.get("value")), arg_names=("value",), arity=(1, 2),
          out_dtype=lambda c: "float32", doc="a / b (broadcast, true division: float32)" + _VALUE_DOC.format("/"),
          shape_doc="a and b broadcast together")
def _scale(ctx):
    factor = ctx.args["factor"]
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        raise ShapeError(f"factor must be a number, got {factor!r}")
    return ctx.shapes[0]


tensor_op("scale", _scale, lambda a: M.Scale(a["factor"]), arg_names=("factor",),
          required=("factor",), in_dtype="float",
          doc='x * `factor` (a number)',
          shape_doc='the shape of x')


def _matmul(ctx):
    a, b = ctx.shapes
    if len(a) < 1 or len(b) < 1:
        raise ShapeError("matmul needs tensors of rank >= 1")
    ka = a[-1]
    kb = b[-2] if len(b) > 1 else b[0]
    if not S.same(ka, kb):
        raise S.mismatch(f"cannot matmul {S.fmt(a)} and {S.fmt(b)}: inner dims differ", ka, kb)
    if len(a) == 1 and len(b) == 1:
        return ()
    if len(b) == 1:
        return a[:-1]
    if len(a) == 1:
        return b[:-2] + b[-1:]
    batch = S.broadcast([a[:-2], b[:-2]], "matmul batch dims of") if (a[:-2] or b[:-2]) else ()
    return batch + (a[-2], b[-1])


def _matmul_macs(ctx, out):
    """One multiply-accumulate per output element and step of the inner dim (a batched matmul too)."""
    n = S.concrete(ctx.shapes[0])[-1]
    for d in S.concrete(next(iter(out.values()))):
        n *= d
    return n


tensor_op("matmul", _matmul, lambda a: M.MatMul(), arity=(2, 2), in_dtype="float", macs=_matmul_macs,
          doc='torch.matmul(a, b)',
          shape_doc='[..., n, k] @ [..., k, m] -> [..., n, m] (batch dims broadcast; 1-D operands as torch.matmul)')


def _join(stack):
    def infer(ctx):
        _common_dtype(ctx)
        first = ctx.shapes[0]
        rank = len(first) + (1 if stack else 0)
        dim = S.norm_dim(ctx.args.get("dim", 0 if stack else -1), rank)
        verb = "stack" if stack else f"concat along dim {dim}"
        for other in ctx.shapes[1:]:
            if len(other) != len(first):
                raise ShapeError(f"cannot {verb} {S.fmt(first)} and {S.fmt(other)}")
            for i, (x, y) in enumerate(zip(first, other)):
                if (stack or i != dim) and not S.same(x, y) and (stack or 1 not in (x, y)):  # concat broadcasts 1s
                    raise S.mismatch(f"cannot {verb} {S.fmt(first)} and {S.fmt(other)} (dim {i})", x, y)
        if stack:
            return first[:dim] + (len(ctx.shapes),) + first[dim:]
        ctx.args["_expand"] = _concat_expansion(ctx.shapes, dim)
        total = 0
        for s in ctx.shapes:
            total = S.add(total, s[dim])
        out = S.broadcast([s[:dim] + (1,) + s[dim + 1:] for s in ctx.shapes], f"concat along dim {dim}")
        return out[:dim] + (total,) + out[dim + 1:]
    return infer


def _concat_expansion(shapes, dim):
    """Per input: None, or the sizes to expand it to before the concat (-1 = keep; ("dim", j, d) = dim d
    of input j at run time), so a [1, 1, D] class token joins [B, N, D] tokens along dim 1."""
    plan = []
    for s in shapes:
        sizes = []
        for d, n in enumerate(s):
            donor = next((j for j, o in enumerate(shapes) if o[d] != 1), None) if d != dim and n == 1 else None
            sizes.append(-1 if donor is None else ("dim", donor, d))
        plan.append(sizes if any(x != -1 for x in sizes) else None)
    return plan if any(plan) else None


tensor_op("concat", _join(False), lambda a: M.Concat(a.get("dim", -1), a.get("_expand")), arg_names=("dim",),
          arity=(1, None),
          aliases=("cat",), out_dtype=_common_dtype,
          doc=('torch.cat along `dim` (default -1); size-1 dims other than `dim` broadcast, so a [1, 1, D] class '
               'token joins [B, N, D] tokens'),
          shape_doc="the inputs' sizes along `dim` added; every other dim equal (or 1, broadcast)")
tensor_op("stack", _join(True), lambda a: M.Stack(a.get("dim", 0)), arg_names=("dim",), arity=(1, None),
          out_dtype=_common_dtype,
          doc='torch.stack along a new `dim` (default 0)',
          shape_doc='equal input shapes; a new dim of size (number of inputs) inserted at `dim`')


def _reshape(ctx):
    shape = ctx.shapes[0]
    target = ctx.args["shape"]
    if not isinstance(target, (list, tuple)):
        raise ShapeError(f"shape must be a list, got {target!r}")
    out, runtime = [], []
    for d in target:
        if isinstance(d, str):  # a symbolic dim of the input, kept as is
            if d not in shape:
                raise ShapeError(f"'{d}' is not a dim of the input {S.fmt(shape)}")
            out.append(d)
            runtime.append(("dim", shape.index(d)))
        elif isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d in (-1, 0)):
            if d == 0:
                out.append(shape[len(out)])
                runtime.append(("dim", len(runtime)))
            else:
                out.append(d)
                runtime.append(d)
        else:
            raise ShapeError(f"shape entries must be positive ints, -1, 0 or dim names, got {d!r}")
    if out.count(-1) > 1:
        raise ShapeError("at most one -1 in shape")
    total = S.prod(shape)
    known = S.prod(d for d in out if d != -1)
    if -1 in out:
        out[out.index(-1)] = S.exact_div(total, known, f"cannot reshape {S.fmt(shape)} to {list(target)}")
    elif not S.same(total, known):
        sym_in = sorted(d for d in shape if not S.is_static(d))
        if sym_in == sorted(d for d in out if not S.is_static(d)):  # the static parts must agree
            static = [S.prod(d for d in s if S.is_static(d)) for s in (shape, out)]
            raise ShapeError(f"cannot reshape {S.fmt(shape)} to {S.fmt(out)}: {static[0]} and {static[1]} "
                             f"elements" + (f" per {'*'.join(sym_in)}" if sym_in else ""))
        raise S.mismatch(f"cannot reshape {S.fmt(shape)} to {S.fmt(out)}", total, known)
    ctx.args["_runtime_shape"] = runtime
    return tuple(out)


tensor_op("reshape", _reshape, lambda a: M.Reshape(a["_runtime_shape"]), arg_names=("shape",),
          required=("shape",), aliases=("view",), category="shape",
          doc='reshape to `shape`: sizes, -1, 0 = keep, or a dim name of the input such as B',
          shape_doc=('`shape`, with -1 the exact (symbolic) remaining size; an error when it is not whole for every '
                     'size'))


def _permute(ctx):
    shape = ctx.shapes[0]
    dims = [S.norm_dim(d, len(shape)) for d in ctx.args["dims"]]
    if sorted(dims) != list(range(len(shape))):
        raise ShapeError(f"dims {ctx.args['dims']} is not a permutation of the {len(shape)} dims of {S.fmt(shape)}")
    return tuple(shape[d] for d in dims)


tensor_op("permute", _permute, lambda a: M.Permute(a["dims"]), arg_names=("dims",), required=("dims",),
          doc='x.permute(dims): `dims` a permutation',
          shape_doc="the input's dims reordered by `dims`")


def _transpose(ctx):
    shape = list(ctx.shapes[0])
    a = S.norm_dim(ctx.args["dim0"], len(shape))
    b = S.norm_dim(ctx.args["dim1"], len(shape))
    shape[a], shape[b] = shape[b], shape[a]
    return tuple(shape)


tensor_op("transpose", _transpose, lambda a: M.Transpose(a["dim0"], a["dim1"]), arg_names=("dim0", "dim1"),
          required=("dim0", "dim1"),
          doc='x.transpose(dim0, dim1)',
          shape_doc='dims `dim0` and `dim1` swapped')


def _split_sections(ctx):
    shape = ctx.shapes[0]
    dim = S.norm_dim(ctx.args.get("dim", -1), len(shape))
    n = shape[dim]
    if "sections" in ctx.args:
        sections = list(ctx.args["sections"])
        if not S.same(sum(sections), n):
            raise S.mismatch(f"sections {sections} add up to {sum(sections)}, not {n} ({S.fmt(shape)} dim {dim})",
                             sum(sections), n)
    else:
        chunks = ctx.args.get("chunks")
        size = ctx.args.get("size")
        if not S.is_static(n):
            raise ShapeError(f"cannot split the symbolic dim {n} into a fixed number of pieces: use `sections`")
        if chunks:
            if n % chunks:
                raise ShapeError(f"dim {dim} of {S.fmt(shape)} ({n}) is not divisible into {chunks} chunks")
            sections = [n // chunks] * chunks
        elif size:
            sections = [size] * (n // size) + ([n % size] if n % size else [])
        else:
            raise ShapeError("split needs `chunks`, `size` or `sections`")
    ctx.args["_sections"], ctx.args["_dim"] = sections, dim
    return {p: shape[:dim] + (s,) + shape[dim + 1:] for p, s in zip(_split_ports(ctx.args), sections)}


def _split_ports(args):
    if args.get("names"):
        return tuple(args["names"])
    n = args.get("chunks") or len(args.get("sections") or []) or len(args.get("_sections") or [])
    return tuple(str(i) for i in range(n))


tensor_op("split", _split_sections, lambda a: M.Split(a["_sections"], a["_dim"]),
          arg_names=("chunks", "size", "sections", "dim", "names"), ports=_split_ports, aliases=("chunk",),
          category="shape",
          doc=('split along `dim` into `chunks` equal parts, parts of `size`, or `sections`; ports 0, 1, ... or '
               '`names`'),
          shape_doc="each port is x with its part's size along `dim`")


def _slice(ctx):
    shape = ctx.shapes[0]
    dim = S.norm_dim(ctx.args["dim"], len(shape))
    n = shape[dim]
    start, end, step = ctx.args.get("start"), ctx.args.get("end"), ctx.args.get("step", 1)
    for name, v in (("start", start), ("end", end)):
        if v is not None and not S.is_static(v):
            raise ShapeError(f"{name} must be an integer or null, got {v!r}")
    if not isinstance(step, int) or step < 1:
        raise ShapeError(f"step must be a positive int, got {step!r}")
    size = S.slice_len(n, start, end, step)
    if S.is_static(size) and size == 0:
        raise ShapeError(f"slice [{start}:{end}:{step}] of dim {dim} ({n}) is empty")
    S.require(size, 1, f"slice [{start}:{end}:{step}] of dim {dim} ({n})")
    return shape[:dim] + (size,) + shape[dim + 1:]


tensor_op("slice", _slice, lambda a: M.Slice(a["dim"], a.get("start"), a.get("end"), a.get("step", 1)),
          arg_names=("dim", "start", "end", "step"), required=("dim",), category="shape",
          doc='x[start:end:step] along `dim` (Python slicing of one dim)',
          shape_doc="the size along `dim` becomes the slice's length (exact for symbolic sizes)")


def _select(ctx):
    shape = ctx.shapes[0]
    dim = S.norm_dim(ctx.args["dim"], len(shape))
    n, i = shape[dim], ctx.args["index"]
    if not S.is_static(i):
        raise ShapeError(f"index must be an integer, got {i!r}")
    if S.is_static(n) and not -n <= i < n:
        raise ShapeError(f"index {i} is out of range for dim {dim} of size {n}")
    S.require(n, i + 1 if i >= 0 else -i, f"dim {dim} ({n}) against index {i}")
    return shape[:dim] + shape[dim + 1:]


tensor_op("select", _select, lambda a: M.Select(a["dim"], a["index"]), arg_names=("dim", "index"),
          required=("dim", "index"), category="shape",
          doc='x.select(dim, index): one index of `dim`, which is dropped (e.g. the last time step, index -1)',
          shape_doc='x without `dim`')


def _reduce(ctx):
    shape = ctx.shapes[0]
    dim = ctx.args.get("dim")
    keep = ctx.args.get("keepdim", False)
    if not isinstance(keep, bool):
        raise ShapeError(f"keepdim must be true or false, got {keep!r}")
    if dim is None:
        return ()
    dims = {S.norm_dim(d, len(shape)) for d in (dim if isinstance(dim, (list, tuple)) else [dim])}
    return tuple((1 if i in dims else d) for i, d in enumerate(shape) if keep or i not in dims)


for _kind in ("mean", "sum"):
    tensor_op(_kind, _reduce, lambda a, k=_kind: M.Reduce(k, a.get("dim"), a.get("keepdim", False)),
              arg_names=("dim", "keepdim"), in_dtype="float" if _kind == "mean" else None,
              doc='mean or sum over `dim` (one or a list; all when absent), `keepdim`',
              shape_doc='the reduced dims removed (size 1 with keepdim); a scalar [] when `dim` is absent')


def _unsqueeze(ctx):
    shape = ctx.shapes[0]
    dim = S.norm_dim(ctx.args["dim"], len(shape) + 1)
    return shape[:dim] + (1,) + shape[dim:]


def _squeeze(ctx):
    shape = ctx.shapes[0]
    dim = S.norm_dim(ctx.args["dim"], len(shape))
    if shape[dim] != 1:
        raise ShapeError(f"cannot squeeze dim {dim} of {S.fmt(shape)}: its size is not 1")
    return shape[:dim] + shape[dim + 1:]


tensor_op("unsqueeze", _unsqueeze, lambda a: M.Unsqueeze(a["dim"]), arg_names=("dim",), required=("dim",),
          category="shape",
          doc='x.unsqueeze(dim): inserts a size-1 dim',
          shape_doc='a size-1 dim inserted at `dim`')
tensor_op("squeeze", _squeeze, lambda a: M.Squeeze(a["dim"]), arg_names=("dim",), required=("dim",),
          category="shape",
          doc='x.squeeze(dim): removes the size-1 `dim`',
          shape_doc='x without `dim` (which must have size 1)')
