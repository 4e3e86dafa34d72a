"""Symbolic dims as sympy expressions with exact floor division, and their canonical text.

A symbolic dim lives in the graph as a short string that is a Python integer expression over dim names
(`H//4+1`, `64*(H//32)*(W//32)`, `min(T,8)`): `parse` turns it into sympy, `text` turns sympy back into
that one canonical form. Symbols are positive integers. `FloorDiv` is torch's symbolic-shape idea (a
sympy function that stays exact) with the normalisations a chain of strided windows needs:
floor((floor(x/a)+b)/c) = floor((x+a*b)/(a*c)), terms divisible by the divisor leave it, and common
factors cancel. A dim declared `multiple_of: m` is parsed as m*H' (H' a fresh positive integer), which
is what lets `H//16*2` and `H//8` become the same expression; `text` writes H' back as H/m.
"""
from __future__ import annotations

import ast
import math
from functools import lru_cache

import sympy
from sympy import Integer


class FloorDiv(sympy.Function):
    """floor(base / divisor) for an integer-valued base and a positive integer divisor."""
    is_integer = True

    @classmethod
    def eval(cls, base, div):
        if not (div.is_Integer and div > 0):
            raise ValueError(f"floor division by {div}: only positive integer divisors are supported")
        if div == 1:
            return base
        if base.is_Integer:
            return Integer(int(base) // int(div))
        if isinstance(base, FloorDiv):
            return FloorDiv(base.args[0], base.args[1] * div)
        const, rest = base.as_coeff_Add()
        if isinstance(rest, FloorDiv) and const.is_Integer:
            inner, a = rest.args
            return FloorDiv(inner + a * const, a * div)
        terms = sympy.Add.make_args(base)
        coeffs = [t.as_coeff_Mul()[0] for t in terms]
        if not all(c.is_Integer for c in coeffs):
            return None  # rational coefficients: only while `text` writes a multiple back
        out = [t / div for t, c in zip(terms, coeffs) if not t.is_Integer and c % div == 0]
        if const.is_Integer and not 0 <= const < div:  # the constant goes to [0, div): one form per value
            out.append(Integer(int(const) // int(div)))
        if out:
            keep = [t for t, c in zip(terms, coeffs) if not t.is_Integer and c % div != 0]
            if const.is_Integer:
                keep.append(Integer(int(const) % int(div)))
            return sympy.Add(*out) + FloorDiv(sympy.Add(*keep), div)
        var = [int(c) for t, c in zip(terms, coeffs) if not t.is_Integer]
        g = math.gcd(int(div), *var)
        if g > 1:  # floor((g*y + c)/d) = floor((y + floor(c/g))/(d/g)) for integer y and g | d
            c0 = int(const) if const.is_Integer else 0
            return FloorDiv(sympy.expand((base - const) / g) + c0 // g, div // g)
        return None


def symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, integer=True, positive=True)


def quotient_symbol(name: str) -> sympy.Symbol:
    """H' in H = m*H' for a dim declared `multiple_of: m` (the quote keeps it apart from user names)."""
    return sympy.Symbol(name + "'", integer=True, positive=True)


def floordiv(a, b):
    return FloorDiv(a, Integer(b))


# ---- parsing ------------------------------------------------------------------------------------

_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b}


@lru_cache(maxsize=65536)
def parse(text: str, multiples: tuple = ()) -> sympy.Expr:
    """The sympy expression of a dim's text; `multiples` is ((name, m), ...) for declared multiples."""
    subs = dict(multiples)
    tree = ast.parse(text, mode="eval").body

    def walk(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return Integer(node.value)
        if isinstance(node, ast.Name):
            m = subs.get(node.id, 1)
            return m * quotient_symbol(node.id) if m > 1 else symbol(node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.BinOp):
            a, b = walk(node.left), walk(node.right)
            if type(node.op) in _BINOPS:
                return _BINOPS[type(node.op)](a, b)
            if isinstance(node.op, (ast.FloorDiv, ast.Mod)):
                q = FloorDiv(a, b)
                return q if isinstance(node.op, ast.FloorDiv) else a - b * q
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max"):
            fn = sympy.Min if node.func.id == "min" else sympy.Max
            return fn(*(walk(a) for a in node.args))
        raise ValueError(f"not a dim expression: {text!r}")

    return walk(tree)


def evaluate(text: str, sizes: dict) -> int:
    """The value of a dim's text at concrete sizes, with Python's own integer semantics (no sympy)."""
    return _evaluator(text)(sizes)


@lru_cache(maxsize=65536)
def _evaluator(text: str):
    code = compile(ast.Expression(_checked(ast.parse(text, mode="eval").body, text)), "<dim>", "eval")
    return lambda sizes: eval(code, {"__builtins__": {}, "min": min, "max": max}, dict(sizes))  # noqa: S307


def _checked(tree, text):
    """Only ints, names, + - * // %, unary minus, min() and max(): the grammar `text` writes."""
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load, ast.Add, ast.Sub,
               ast.Mult, ast.FloorDiv, ast.Mod, ast.USub, ast.Call)
    for node in ast.walk(tree):
        if not isinstance(node, allowed) or (isinstance(node, ast.Call) and not (
                isinstance(node.func, ast.Name) and node.func.id in ("min", "max") and not node.keywords)):
            raise ValueError(f"not a dim expression: {text!r}")
        if isinstance(node, ast.Constant) and (not isinstance(node.value, int) or isinstance(node.value, bool)):
            raise ValueError(f"not a dim expression: {text!r}")
    return tree


def is_valid(text: str) -> bool:
    """Text in the dim grammar (ints, names, + - * // %, min, max): 'att.out' or '' is not."""
    try:
        _evaluator(text)
    except (SyntaxError, ValueError):
        return False
    return True


def names(text: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(text, mode="eval")) if isinstance(n, ast.Name)
            and n.id not in ("min", "max")}


# ---- printing -----------------------------------------------------------------------------------

def unquote(expr: sympy.Expr, multiples: tuple = ()) -> sympy.Expr:
    """Write each H' back as H/m (rational coefficients that `text` turns into exact `//`)."""
    if not multiples:
        return expr
    return expr.xreplace({quotient_symbol(n): symbol(n) / m for n, m in multiples})


def text(expr: sympy.Expr) -> str:
    """The canonical short text: ints, names, + - * //, parentheses, min(), max()."""
    if expr.is_Integer:
        return str(int(expr))
    if expr.is_Symbol:
        return expr.name
    if expr.is_Add:
        const, rest = expr.as_coeff_Add()
        terms = sorted(sympy.Add.make_args(rest), key=sympy.default_sort_key)
        if const:
            terms.append(const)
        out = _term(terms[0])
        for t in terms[1:]:
            c = t.as_coeff_Mul()[0]
            out += "-" + _term(-t) if c < 0 else "+" + _term(t)
        return out
    return _term(expr)


def _term(expr) -> str:
    if expr.is_Integer or expr.is_Symbol:
        return str(int(expr)) if expr.is_Integer else expr.name
    if isinstance(expr, FloorDiv):
        base, div = expr.args
        num, den = _clear(base)
        inner = text(num)
        if num.is_Add or (num.is_Mul and num.as_coeff_Mul()[0] < 0):
            inner = f"({inner})"
        return f"{inner}//{int(div) * den}"
    if isinstance(expr, (sympy.Min, sympy.Max)):
        name = "min" if isinstance(expr, sympy.Min) else "max"
        return f"{name}({','.join(text(a) for a in sorted(expr.args, key=sympy.default_sort_key))})"
    if expr.is_Add:
        return f"({text(expr)})"
    if expr.is_Mul or expr.is_Pow or expr.is_Rational:
        coeff, rest = expr.as_coeff_Mul()
        factors = []
        for f in sympy.Mul.make_args(rest) if rest != 1 else ():
            base, exp = f.as_base_exp()
            if base.is_Add:  # 4*H+4 inside a product is written 4*(H+1)
                content, base = base.primitive()
                coeff *= content ** exp
            piece = _term(base)
            if isinstance(base, FloorDiv) or base.is_Add:
                piece = f"({text(base)})"
            factors += [piece] * int(exp)
        p, q = int(sympy.numer(coeff)), int(sympy.denom(coeff))
        body = "*".join(sorted(factors))
        if p == -1:
            out = "-" + body
        elif p == 1:
            out = body
        else:
            out = f"{p}*{body}" if body else str(p)
        return f"{out}//{q}" if q != 1 else out
    raise ValueError(f"cannot write {expr} as a dim")


def _clear(base):
    """base = num/den with integer coefficients in num."""
    den = 1
    for t in sympy.Add.make_args(base):
        den = math.lcm(den, int(sympy.denom(t.as_coeff_Mul()[0])))
    return sympy.expand(base * den), den
