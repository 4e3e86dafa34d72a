"""Symbolic shapes: a shape is a tuple of ints (static) and strings (symbolic dims such as "B", "T").

Arithmetic on symbolic dims produces readable expression strings ("(T-2)"); two dims are equal when
they are the same int or the same string. Kept deliberately tiny: the graph only needs to check and show.
"""
from __future__ import annotations


class ShapeError(ValueError):
    """A shape or argument problem in one node; the graph builder adds the location."""


def fmt(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def is_static(d) -> bool:
    return isinstance(d, int) and not isinstance(d, bool)


def sym(expr: str) -> str:
    return expr if expr.isidentifier() else f"({expr})"


def add(a, b):
    if is_static(a) and is_static(b):
        return a + b
    if b == 0:
        return a
    if a == 0:
        return b
    return sym(f"{a}+{b}" if not (is_static(b) and b < 0) else f"{a}{b}")


def mul(a, b):
    if is_static(a) and is_static(b):
        return a * b
    if a == 1:
        return b
    if b == 1:
        return a
    return sym(f"{a}*{b}")


def prod(dims):
    out = 1
    for d in dims:
        out = mul(out, d)
    return out


def window_out(n, kernel, stride=1, padding=0, dilation=1, ceil_mode=False):
    """Output length of a conv/pool window along one dim (torch's formula)."""
    _check_window(kernel, stride, padding, dilation)
    if is_static(n):
        num = n + 2 * padding - dilation * (kernel - 1) - 1
        if num < 0:
            raise ShapeError(f"input size {n} is smaller than the window ({kernel}, dilation {dilation}) "
                             f"after padding {padding}")
        out = (-(-num // stride) if ceil_mode else num // stride) + 1
        return out
    if stride == 1 and 2 * padding == dilation * (kernel - 1):
        return n
    delta = 2 * padding - dilation * (kernel - 1)
    inner = add(n, delta)
    return inner if stride == 1 else sym(f"{inner}//{stride}+1" if delta - 1 else f"{inner}//{stride}")


def _check_window(kernel, stride, padding, dilation):
    for name, v, low in (("kernel_size", kernel, 1), ("stride", stride, 1), ("dilation", dilation, 1),
                         ("padding", padding, 0)):
        if not is_static(v) or not low <= v <= 2**31:
            raise ShapeError(f"{name} must be {'a positive' if low else 'a non-negative'} integer up to 2**31, "
                             f"got {v!r}")


def transpose_out(n, kernel, stride=1, padding=0, output_padding=0, dilation=1):
    _check_window(kernel, stride, padding, dilation)
    if is_static(n):
        return (n - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
    return sym(f"({n}-1)*{stride}+{dilation * (kernel - 1) + output_padding + 1 - 2 * padding}")


def broadcast(shapes, what="combine"):
    """numpy broadcasting over symbolic shapes; raises ShapeError naming both shapes."""
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        chosen = 1
        for d in dims:
            if d == 1:
                continue
            if chosen == 1:
                chosen = d
            elif chosen != d:
                raise ShapeError(f"cannot {what} " + " and ".join(fmt(s) for s in shapes))
        out.append(chosen)
    return tuple(out)


def norm_dim(dim: int, rank: int, what="dim") -> int:
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise ShapeError(f"{what} must be an integer, got {dim!r}")
    if not -rank <= dim < rank:
        raise ShapeError(f"{what} {dim} is out of range for a rank-{rank} tensor")
    return dim % rank


def concrete(shape, sizes: dict | None = None, default: int = 1):
    """Replace symbolic dims by example sizes (for MAC estimates and example tensors)."""
    sizes = sizes or {}
    out = []
    for d in shape:
        if is_static(d):
            out.append(d)
        elif d in sizes:
            out.append(sizes[d])
        elif d.isidentifier():
            out.append(default)
        else:
            try:
                from .expr import evaluate
                out.append(int(evaluate(d, {**{k: sizes.get(k, default) for k in _names(d)}})))
            except Exception:
                out.append(default)
    return tuple(out)


def _names(expr: str):
    import re
    return set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", expr))
