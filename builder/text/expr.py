"""`${...}` expressions: a hand-written evaluator over a whitelisted AST. Never Python `eval`.

Allowed: numbers, booleans, strings, param names, `data.num_classes` / `data.num_features`, + - * / // % **, unary -, not, and/or, comparisons,
`a if c else b`, and the functions min, max, abs, int, float, round. Every intermediate number is
bounded, so `${10**10**10}` fails at once instead of hanging.

`dim(NAME, I)` reads the static size of dim I of what NAME (an input, a block input, a node, or
`node.port`) produces. Sizes are known only during shape inference: the graph passes a reader under
the key DIM_READER; without one, `NeedsShape` says the value must wait (see `Deferred`).
"""
from __future__ import annotations

import ast
import functools
import math
import operator
import re

from builder.core.errors import did_you_mean

MAX_INT = 2**63 - 1
MAX_EXPR_LEN = 500
_FULL = re.compile(r"^\$\{([^{}]*)\}$")
_PART = re.compile(r"\$\{([^{}]*)\}")


class ExprError(ValueError):
    """Raised with a user-facing message; callers attach the source location."""

    undefined: str | None = None  # the name, when the problem is an undefined param


class NeedsShape(ExprError):
    """The expression reads `dim(...)` (or a param that does) before shapes are known."""


DIM_READER = "dim()"  # names[DIM_READER](name, index) -> int; not an identifier, so no param can clash


class Deferred:
    """A value whose `${...}` reads sizes: kept with its names and the context that evaluates it (its scope's
    lookups, the spec's evaluator: builder.graph.deferred.SizeContext) until shape inference."""

    def __init__(self, raw, names: dict, context):
        self.raw, self.names, self.context = raw, names, context
        self.value, self.done = None, False


_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Gt: operator.gt, ast.GtE: operator.ge}
_FUNCS = {"min": min, "max": max, "abs": abs, "int": int, "float": float, "round": round}


DATA_SIZES = ("num_classes", "num_features", "vocab_size")  # `${data.NAME}`: sizes the training data gives (data/sizes.py)
MAX_LEN = 10_000  # strings and lists built by an expression (`${l + l}` doubling through params)


def _bounded(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, (str, list, tuple, dict)) and len(v) > MAX_LEN:
        raise ExprError(f"value too long (over {MAX_LEN} items)")
    if isinstance(v, int) and abs(v) > MAX_INT:
        raise ExprError("value too large (over 2**63)")
    if isinstance(v, float) and (math.isinf(v) or math.isnan(v)):
        raise ExprError("value is not finite")
    return v


def _pow(a, b):
    """a ** b, refused before Python computes a huge (or infinite, or complex) result."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if a == 0 and b < 0:
            raise ExprError("division by zero (0 to a negative power)")
        if a != 0 and abs(math.log2(abs(a)) * b) > 1024 and (abs(a) > 1) == (b > 0):
            raise ExprError("value too large (over 2**63)")
        if abs(a) > 1 and b > 0 and b * math.log2(abs(a)) > 64:
            raise ExprError("value too large (over 2**63)")
        if a < 0 and isinstance(b, float) and not b.is_integer():
            raise ExprError("a negative number to a fractional power is not a real number")
    try:
        return a ** b
    except (OverflowError, ZeroDivisionError) as e:
        raise ExprError(f"cannot compute the power ({e})") from None


@functools.lru_cache(maxsize=4096)
def _parse(expr: str):
    try:
        return ast.parse(expr, mode="eval")
    except SyntaxError:
        raise ExprError(f"invalid expression '{expr}'") from None


def evaluate(expr: str, names: dict):
    """Evaluate one expression (the text inside `${...}`) over `names`."""
    if len(expr) > MAX_EXPR_LEN:
        raise ExprError(f"expression longer than {MAX_EXPR_LEN} characters")
    tree = _parse(expr.strip())

    def ev(n):
        if isinstance(n, ast.Expression):
            return ev(n.body)
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float, str, bool)) or (
                isinstance(n, ast.Constant) and n.value is None):
            return _bounded(n.value)
        if isinstance(n, ast.Name):
            if n.id in names:
                if isinstance(names[n.id], Deferred):
                    raise NeedsShape(f"'{n.id}' reads a size (dim(...)), known only once shapes are inferred")
                return names[n.id]
            if n.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[n.id]
            hint = did_you_mean(n.id, names)
            error = ExprError(f"undefined param '{n.id}' in ${{{expr.strip()}}}" + (f" ({hint})" if hint else ""))
            error.undefined = n.id
            raise error
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "data" \
                and n.attr in DATA_SIZES:  # ${data.num_classes}: filled in from the training data
            key = f"data.{n.attr}"
            if key in names:
                return names[key]
            error = ExprError(f"${{{key}}} comes from the training data: `build train` and `build check` read "
                              f"it from train.data (without train.data: --set {key}=N)")
            error.undefined = key
            raise error
        if isinstance(n, ast.BinOp) and type(n.op) in _BIN:
            a, b = ev(n.left), ev(n.right)
            if isinstance(n.op, ast.Pow):
                return _bounded(_pow(a, b))
            if isinstance(n.op, ast.Mult) and (isinstance(a, str) or isinstance(b, str)):
                raise ExprError("cannot multiply strings")
            if isinstance(n.op, ast.Mod) and isinstance(a, str):  # '%2147483000d' % 1 would allocate 2 GB
                raise ExprError("cannot format strings with % (use + to join text)")
            if isinstance(n.op, ast.Mult) and (isinstance(a, (list, tuple, dict)) or isinstance(b, (list, tuple, dict))):
                raise ExprError("cannot multiply lists")
            try:
                return _bounded(_BIN[type(n.op)](a, b))
            except ZeroDivisionError:
                raise ExprError(f"division by zero in ${{{expr.strip()}}}") from None
            except OverflowError:
                raise ExprError(f"value too large in ${{{expr.strip()}}}") from None
            except TypeError:
                raise ExprError(f"cannot apply {type(n.op).__name__} to {type(a).__name__} and "
                                f"{type(b).__name__} in ${{{expr.strip()}}}") from None
        if isinstance(n, ast.UnaryOp):
            v = ev(n.operand)
            if isinstance(n.op, ast.Not):
                return not v
            if isinstance(n.op, (ast.USub, ast.UAdd)):
                if not isinstance(v, (int, float)):
                    raise ExprError(f"cannot negate {type(v).__name__} in ${{{expr.strip()}}}")
                return _bounded(-v if isinstance(n.op, ast.USub) else +v)
        if isinstance(n, ast.BoolOp):
            vals = [ev(v) for v in n.values]
            out = vals[0]
            for v in vals[1:]:
                out = (out and v) if isinstance(n.op, ast.And) else (out or v)
            return out
        if isinstance(n, ast.Compare):
            left = ev(n.left)
            for op, right_node in zip(n.ops, n.comparators):
                if type(op) not in _CMP:
                    break
                right = ev(right_node)
                try:
                    if not _CMP[type(op)](left, right):
                        return False
                except TypeError:
                    raise ExprError(f"cannot compare {type(left).__name__} and {type(right).__name__}") from None
                left = right
            else:
                return True
        if isinstance(n, ast.IfExp):
            return ev(n.body) if ev(n.test) else ev(n.orelse)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "dim":
            return _dim(n, ev, names, expr)
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _FUNCS
                and not n.keywords and n.args):
            args = [ev(a) for a in n.args]
            try:
                return _bounded(_FUNCS[n.func.id](*args))
            except (TypeError, ValueError, OverflowError) as e:
                raise ExprError(f"{n.func.id}(): {e}") from None
        raise ExprError(f"'{ast.unparse(n)}' is not allowed in an expression "
                        "(only arithmetic, comparisons, if/else, min, max, abs, int, float, round, dim)")

    try:
        return ev(tree)
    except RecursionError:
        raise ExprError("expression nested too deeply") from None


def _dim(call, ev, names, expr):
    """dim(NAME, I) or dim(node.port, I): the reader given by the graph answers, or NeedsShape."""
    target = call.args[0] if len(call.args) == 2 and not call.keywords else None
    if isinstance(target, ast.Name):
        name = target.id
    elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
        name = f"{target.value.id}.{target.attr}"
    else:
        raise ExprError(f"dim() takes a node or input name and a dim index, e.g. dim(x, 1), in ${{{expr.strip()}}}")
    index = ev(call.args[1])
    if not isinstance(index, int) or isinstance(index, bool):
        raise ExprError(f"dim({name}, ...): the index must be an integer, got {index!r}")
    reader = names.get(DIM_READER)
    if reader is None:
        raise NeedsShape(f"dim({name}, {index}) is known only once shapes are inferred")
    return reader(name, index)


def has_expr(value) -> bool:
    return isinstance(value, str) and "${" in value


def substitute(value, names: dict):
    """Resolve `${...}` in a string: exactly `${e}` keeps the type of e; otherwise text interpolation."""
    if not isinstance(value, str) or "${" not in value:
        return value
    m = _FULL.match(value.strip())
    if m:
        return evaluate(m.group(1), names)
    return _bounded(_PART.sub(lambda mm: str(evaluate(mm.group(1), names)), value))
