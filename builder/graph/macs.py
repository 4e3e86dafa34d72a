"""MAC counts at concrete sizes: each op's own `macs` rule, evaluated with every symbolic dim at a size.

Inference records MACs at the example sizes (B = 1, each dim's `example:`, else its minimum);
`build summary --set-dim H=512` counts again at other sizes from the same finished graph.
"""
from __future__ import annotations

from builder.shapes import dimenv as D
from builder import ops as ops_pkg
from builder.ops.registry import InferContext
from builder.core.types import record, records


def record_macs(graph, rec) -> int:
    """MACs of one node at the active env's example sizes (0 for inputs and ops without a rule)."""
    op = ops_pkg.get(rec.op)
    if op is None or op.macs is None:
        return 0
    dtypes = [record(graph, src).dtype for src, _ in rec.sources]
    ctx = InferContext(list(rec.in_shapes), dtypes, dict(rec.args), list(rec.slots) if rec.slots else None)
    try:
        return int(op.macs(ctx, rec.out_shapes))
    except Exception:  # a third-party rule that cannot count: no estimate rather than no graph
        return 0


def env_of(graph, sizes: dict | None = None) -> D.DimEnv:
    """The graph's dims as inference left them, with `sizes` as the examples."""
    sizes = sizes or {}
    decls = {name: D.DimDecl(name, info["min"], info["max"], info["multiple_of"], sizes.get(name, info["example"]))
             for name, info in (graph.graph.get("dims") or {}).items()}
    for name, v in sizes.items():
        decls.setdefault(name, D.DimDecl(name, example=v))
    return D.DimEnv(decls)


def count(graph, sizes: dict | None = None) -> dict:
    """node path -> MACs with the given sizes (the others at their example sizes)."""
    with D.active(env_of(graph, sizes)):
        return {rec.path: record_macs(graph, rec) for rec in records(graph)}


def example_sizes(graph, sizes: dict | None = None) -> dict:
    """The size of every symbolic dim of the inputs at which MACs are counted."""
    names = []
    for name in graph.graph.get("inputs", []):
        for dim in record(graph, name).out_shape:
            if isinstance(dim, str) and dim not in names:
                names.append(dim)
    env = env_of(graph, sizes)
    return {n: env.example(n) for n in names}
