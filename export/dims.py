"""The dynamic dims of an export, from what the graph knows about each symbolic dim (`dims:` declarations
and the minimum/maximum sizes inference found the network needs; graph.graph["dims"]).

Each dynamic dim becomes a torch.export.Dim with that min and max; a `multiple_of: m` dim becomes the
derived dim m * Dim(...), so torch.export can prove what shape inference proved (a U-Net's skips line
up). Example and verification sizes lie inside the ranges. When torch.export still specialises a dim,
`specialisation_message` turns its guard into one line naming the dim, the node and the declaration
that would let the dim stay dynamic.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from builder.shapes.dimenv import nearest_allowed

GUARD = re.compile(r"Not all values of (\w+) = .*? satisfy the generated guard (.+?)\.?$", re.M)


@dataclass(frozen=True)
class DimRange:
    """Sizes a symbolic dim may take: [low, high] (high None: unbounded), multiples of `multiple_of`."""
    name: str
    low: int = 1
    high: int | None = None
    multiple_of: int = 1
    example: int | None = None  # declared `example:`

    def fit(self, value: int) -> int:
        """The allowed size nearest above `value` (below it when `value` passes the maximum)."""
        return nearest_allowed(value, self.low, self.high, self.multiple_of)


def ranges_of(graph, symbols) -> dict[str, DimRange]:
    """symbol -> DimRange from the graph's dims record (a plain range for a dim it does not know)."""
    known = (graph.graph.get("dims") if graph is not None else None) or {}
    out = {}
    for sym in symbols:
        info = known.get(sym)
        out[sym] = DimRange(sym) if info is None else DimRange(
            sym, info["min"], info["max"], info["multiple_of"], info["example"])
    return out


def torch_dims(ranges: dict[str, DimRange], dynamic) -> dict:
    """symbol -> torch.export.Dim (or a derived dim m * Dim) for each dynamic symbol."""
    out = {}
    for sym in dynamic:
        r = ranges[sym]
        name = dim_name(sym)
        m = r.multiple_of
        if m > 1:
            bounds = {"min": max(1, -(-r.low // m))}
            if r.high is not None:
                bounds["max"] = r.high // m
            out[sym] = m * torch.export.Dim(f"{name}_over_{m}", **bounds)
        else:
            out[sym] = torch.export.Dim(name, min=r.low, **({"max": r.high} if r.high is not None else {}))
    return out


def dim_name(sym: str) -> str:
    """torch.export.Dim names must be identifiers; spec symbols normally are."""
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in sym)
    return name if name and not name[0].isdigit() else f"d_{name}"


def narrowed_beyond(r: DimRange, low, high) -> bool:
    """torch.export's range is narrower than the declared one (beyond its own rule that a symbol it
    traces is at least 2: for m * s that is 2m)."""
    floor = max(r.low, 2 * r.multiple_of if r.multiple_of > 1 else 1)
    return low > floor or (high != math.inf and (r.high is None or high < r.high))


def fixes_a_dim(error_text: str) -> bool:
    """torch.export's guards pin a dim (or a size made from it) to one value: it cannot stay dynamic."""
    return any("==" in guard or "Eq(" in guard for _, guard in GUARD.findall(error_text))


def specialisation_message(error_text: str, sig, graph) -> str | None:
    """One line for torch.export's "Constraints violated" error: the dim, the node whose input carries
    the guarded size, and the declaration that would satisfy the guard. None for other errors."""
    found = GUARD.findall(error_text)
    if not found:
        return None
    axes = {}
    for inp in sig.inputs:
        for axis, d in enumerate(inp.shape):
            if isinstance(d, str):
                axes[(inp.name, axis)] = d
    parts = []
    for sym, guard in found:
        text = re.sub(r"L\['(\w+)'\]\.size\(\)\[(\d+)\]", lambda m: axes.get((m.group(1), int(m.group(2))), "?"),
                      guard)
        node, fix = _guarded_node(text, graph, sym)
        where = f" at node '{node}'" if node else ""
        parts.append(f"dim {sym} cannot stay dynamic: torch specialises it{where} (guard {text})"
                     + (f"; declare `{sym}: {{min: {fix}}}` under `dims:`" if fix else ""))
    return "; ".join(parts)


def _guarded_node(guard: str, graph, sym: str):
    """(the first node reading a size the guard names, the smallest `sym` that satisfies the guard)."""
    from builder.shapes import dimexpr
    from builder.core.types import records
    m = re.fullmatch(r"\(?(.+?)\)?\s*(!=|>=|>)\s*(\d+)", guard.strip())
    if m is None or graph is None:
        return None, None
    expr = m.group(1).replace(" ", "")
    try:
        target = dimexpr.parse(expr)
    except (ValueError, SyntaxError):
        return None, None
    node = None
    for rec in records(graph):
        if any(isinstance(d, str) and _equal(dimexpr.parse(d), target) for s in rec.in_shapes for d in s):
            node = rec.path
            break
    least = int(m.group(3)) + (0 if m.group(2) == ">=" else 1)
    fix = None
    for size in range(1, 1 << 16):
        if dimexpr.evaluate(expr, {sym: size}) >= least:
            fix = size
            break
    return node, fix


def _equal(a, b) -> bool:
    import sympy
    return sympy.expand(a - b) == 0


def spec_text(torch_text: str, mapping: dict) -> str | None:
    """torch's text of a size (`16*s74`, `s77`) over the spec's dim names (`H`, `B`), or None.

    mapping: torch symbol name -> (spec dim, m) where the spec dim is m * that symbol."""
    import sympy
    from builder.shapes import dimexpr
    try:
        expr = sympy.sympify(torch_text, locals={n: sympy.Symbol(n) for n in mapping})
    except (sympy.SympifyError, TypeError, SyntaxError):
        return None
    if not expr.free_symbols or any(s.name not in mapping for s in expr.free_symbols) or \
            not expr.is_polynomial(*expr.free_symbols):
        return None
    named = expr.xreplace({sympy.Symbol(n): dimexpr.symbol(spec) / m for n, (spec, m) in mapping.items()})
    try:
        return dimexpr.text(sympy.expand(named))
    except ValueError:
        return None
