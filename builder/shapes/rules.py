"""Symbolic shapes: a shape is a tuple of ints (static) and strings (symbolic dims).

A symbolic dim's string is the canonical text of a sympy expression (builder.shapes.dimexpr): a Python integer
expression over dim names such as `B`, `H//4+1` or `64*(H//32)*(W//32)` that evaluates to the real size.
Arithmetic goes through sympy with exact floor division; two dims are equal when their difference
simplifies to 0 under the active `dims:` declarations (builder.shapes.dimenv). The op shape rules in
builder/ops use only the functions here.
"""
from __future__ import annotations

import math

import sympy

from builder.shapes import dimenv as D
from builder.shapes import dimexpr as X


class ShapeError(ValueError):
    """A shape or argument problem in one node; the graph builder adds the location."""


def fmt(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def is_static(d) -> bool:
    return isinstance(d, int) and not isinstance(d, bool)


def is_dim_expression(d) -> bool:
    """A symbolic size: non-empty text that parses as an integer expression over dim names."""
    if not isinstance(d, str) or not d.strip():
        return False
    return X.is_valid(d)


def expr(d) -> sympy.Expr:
    """The sympy expression of a dim (an int or a dim's text) under the active declarations."""
    if is_static(d):
        return sympy.Integer(d)
    return X.parse(d, D.current().multiples)


def dim(e) -> int | str:
    """A sympy expression back to a dim: an int when constant, else its canonical text."""
    e = sympy.sympify(e)
    if e.is_Integer:
        return int(e)
    e = X.unquote(e, D.current().multiples)
    return int(e) if e.is_Integer else X.text(e)


def add(a, b):
    if is_static(a) and is_static(b):
        return a + b
    return dim(expr(a) + expr(b))


def mul(a, b):
    if is_static(a) and is_static(b):
        return a * b
    return dim(expr(a) * expr(b))


def prod(dims):
    out = 1
    for d in dims:
        out = mul(out, d)
    return out


def same(a, b) -> bool:
    """True when a and b are equal for every size the declarations allow (proven, not sampled)."""
    if a == b:
        return True
    if is_static(a) and is_static(b):
        return False
    try:
        return sympy.expand(expr(a) - expr(b)) == 0
    except ValueError:
        return False


def same_shape(a, b) -> bool:
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


_TRY_MULTIPLES = (2, 4, 8, 16, 32, 64, 128, 256, 3, 6, 12, 24, 48, 5, 10, 7)


def equal_if(a, b) -> str:
    """Which `multiple_of` declaration would make a and b equal ('' when none would)."""
    names = sorted(set(X.names(str(a)) if not is_static(a) else ()) | set(X.names(str(b)) if not is_static(b) else ()))
    env = D.current()
    for m in _TRY_MULTIPLES:
        for group in [[n] for n in names] + ([names] if len(names) > 1 else []):
            trial = env
            for n in group:
                trial = trial.with_multiple(n, m)
            with D.active(trial):
                if same(a, b):
                    decl = ", ".join(f"{n}: {{multiple_of: {trial.decl(n).multiple_of}}}" for n in group)
                    return f"declare `{decl}` under `dims:` to make them equal"
    return ""


def mismatch(text: str, a, b) -> ShapeError:
    """A ShapeError for sizes a and b that must be equal: both in simplified form, and the fix if any."""
    if is_static(a) and is_static(b):
        return ShapeError(text)
    hint = equal_if(a, b)
    return ShapeError(f"{text}: {a} and {b} are not equal for every size" + (f"; {hint}" if hint else ""))


def require(d, least: int, what: str) -> None:
    """d >= least for every allowed size (an undeclared minimum is raised, a declared one checked)."""
    if is_static(d):
        if d < least:
            raise ShapeError(f"{what} is {d}, needs >= {least}")
        return
    try:
        D.current().require(d, least, what)
    except D.DimError as e:
        raise ShapeError(str(e)) from None


def require_at_most(d, most: int, what: str) -> None:
    """d <= most for every allowed size; a symbolic d must be a bare dim name (its max is capped)."""
    if is_static(d):
        if d > most:
            raise ShapeError(f"{what} is {d}, at most {most} allowed")
        return
    if not d.isidentifier():
        raise ShapeError(f"{what} ({d}) must be at most {most}: give the dim a fixed size")
    try:
        D.current().require_at_most(d, most, what)
    except D.DimError as e:
        raise ShapeError(str(e)) from None


def floordiv(a, b: int):
    if is_static(a):
        return a // b
    return dim(X.floordiv(expr(a), b))


def exact_div(a, b, what: str):
    """a / b when b divides a for every allowed size; else a ShapeError saying so (and what would fix it)."""
    if is_static(a) and is_static(b):
        if b == 0 or a % b:
            raise ShapeError(f"{what}: {a} is not divisible by {b}")
        return a // b
    num, den = sympy.fraction(sympy.cancel(expr(a) / expr(b)))
    if den.is_Integer and _coefficients_divisible(num, int(den)):
        return dim(sympy.factor(num / den))
    hint = equal_if(mul(floordiv(a, b), b), a) if is_static(b) else ""
    raise ShapeError(f"{what}: {a} is not divisible by {b} for every size" + (f"; {hint}" if hint else ""))


def _coefficients_divisible(num, den: int) -> bool:
    gens = sorted(num.free_symbols | num.atoms(X.FloorDiv, sympy.Min, sympy.Max), key=sympy.default_sort_key)
    if not gens:
        return num.is_Integer and int(num) % den == 0
    try:
        coeffs = sympy.Poly(num, *gens).coeffs()
    except sympy.PolynomialError:
        return False
    return all(c.is_Integer and int(c) % den == 0 for c in coeffs)


def window_out(n, kernel, stride=1, padding=0, dilation=1, ceil_mode=False):
    """Output length of a conv/pool window along one dim: torch's formula, exactly.

    floor((n + 2p - d(k-1) - 1) / s) + 1; with ceil_mode the division rounds up, but a last window
    that would start inside the right padding is dropped (torch's pooling_output_shape)."""
    _check_window(kernel, stride, padding, dilation)
    span = dilation * (kernel - 1) + 1
    if is_static(n):
        num = n + 2 * padding - span
        if num < 0:
            raise ShapeError(f"input size {n} is smaller than the window ({kernel}, dilation {dilation}) "
                             f"after padding {padding}")
        if not ceil_mode:
            return num // stride + 1
        out = -(-num // stride) + 1
        return out - 1 if (out - 1) * stride >= n + padding else out
    require(n, span - 2 * padding, f"input size {n} against the window ({kernel}, dilation {dilation}, "
                                   f"padding {padding})")
    num = expr(n) + 2 * padding - span
    if not ceil_mode:
        return dim(X.floordiv(num, stride) + 1)
    up = X.floordiv(num + stride - 1, stride)
    if padding + stride <= span:  # the last window always starts inside the input: no correction
        return dim(up + 1)
    last = X.floordiv(expr(n) + padding - 1, stride)
    return dim(up + 1) if same(dim(up), dim(last)) else dim(sympy.Min(up, last) + 1)


def _check_window(kernel, stride, padding, dilation):
    for name, v, low in (("kernel_size", kernel, 1), ("stride", stride, 1), ("dilation", dilation, 1),
                         ("padding", padding, 0)):
        if not is_static(v) or not low <= v <= 2**31:
            raise ShapeError(f"{name} must be {'a positive' if low else 'a non-negative'} integer up to 2**31, "
                             f"got {v!r}")


def transpose_out(n, kernel, stride=1, padding=0, output_padding=0, dilation=1):
    """(n-1)*s - 2p + d(k-1) + output_padding + 1 (torch's ConvTranspose formula)."""
    _check_window(kernel, stride, padding, dilation)
    if not is_static(output_padding) or not 0 <= output_padding < max(stride, dilation):
        raise ShapeError(f"output_padding must be smaller than stride or dilation, got {output_padding!r}")
    extra = dilation * (kernel - 1) + output_padding + 1 - 2 * padding
    if is_static(n):
        out = (n - 1) * stride + extra
        if out < 1:
            raise ShapeError(f"output size {out} for input size {n}: padding {padding} is too large")
        return out
    out = dim((expr(n) - 1) * stride + extra)
    require(out, 1, f"output size {out}")
    return out


def slice_len(n, start, end, step):
    """Length of range(n)[start:end:step]; a symbolic n must be long enough for the bounds to apply."""
    if is_static(n):
        return len(range(n)[slice(start, end, step)])
    if start is not None and end is not None and (start < 0) != (end < 0) and start < 0:
        raise ShapeError(f"slice [{start}:{end}] of the symbolic dim {n} shrinks as {n} grows: use bounds of "
                         f"one sign")
    for v in (start, end):
        if v is not None:
            require(n, abs(v), f"dim {n} against the slice bound {v}")
    s = 0 if start is None else (expr(n) + start if start < 0 else start)
    e = expr(n) if end is None else (expr(n) + end if end < 0 else end)
    return dim(X.floordiv(sympy.sympify(e) - s + step - 1, step))


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
            elif not same(chosen, d):
                raise mismatch(f"cannot {what} " + " and ".join(fmt(s) for s in shapes), chosen, d)
        out.append(chosen)
    return tuple(out)


def norm_dim(dim_: int, rank: int, what="dim") -> int:
    if not isinstance(dim_, int) or isinstance(dim_, bool):
        raise ShapeError(f"{what} must be an integer, got {dim_!r}")
    if not -rank <= dim_ < rank:
        raise ShapeError(f"{what} {dim_} is out of range for a rank-{rank} tensor")
    return dim_ % rank


def concrete(shape, sizes: dict | None = None, default: int | None = None):
    """The shape at concrete sizes: `sizes` by name, else each dim's example size (its declared
    `example:`, else its minimum; `default` instead when given)."""
    env = D.current()
    out = []
    for d in shape:
        if is_static(d):
            out.append(d)
            continue
        at = {}
        for n in X.names(d):
            if sizes and n in sizes:
                at[n] = sizes[n]
            else:
                at[n] = default if default is not None else env.example(n)
        out.append(int(X.evaluate(d, at)))
    return tuple(out)


def numel(shape, sizes: dict | None = None) -> int:
    return math.prod(concrete(shape, sizes))
