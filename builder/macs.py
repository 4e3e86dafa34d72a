"""MAC counts at concrete sizes: each op's own `macs` rule, evaluated with every symbolic dim at a size.

The graph records MACs at the example sizes (B = 1, each dim's `example:`, else its minimum);
`build summary --set-dim H=512` counts again at other sizes from the same finished graph.
"""
from __future__ import annotations

from . import dimenv as D
from . import ops as ops_pkg
from .ops.registry import InferContext


def node_macs(graph, path: str) -> int:
    """MACs of one node at the active env's example sizes (0 for inputs and ops without a rule)."""
    d = graph.nodes[path]
    op = ops_pkg.get(d["op"])
    if op is None or op.macs is None:
        return 0
    dtypes = [graph.nodes[src]["dtype"] for src, _ in d["inputs"]]
    ctx = InferContext(list(d["in_shapes"]), dtypes, dict(d["args"]), d.get("input_names"))
    try:
        return int(op.macs(ctx, d["out_shapes"]))
    except Exception:  # a third-party rule that cannot count: no estimate rather than no graph
        return 0


def env_of(graph, sizes: dict | None = None) -> D.DimEnv:
    """The graph's dims (as inference left them) with `sizes` as the examples: for counting again."""
    decls = {}
    for name, info in (graph.graph.get("dims") or {}).items():
        example = (sizes or {}).get(name, info["example"])
        decls[name] = D.DimDecl(name, info["min"], info["max"], info["multiple_of"], example)
    for name, v in (sizes or {}).items():
        if name not in decls:
            decls[name] = D.DimDecl(name, example=v)
    return D.DimEnv(decls)


def count(graph, sizes: dict | None = None) -> dict:
    """node path -> MACs with the given sizes (others at their example sizes)."""
    with D.active(env_of(graph, sizes)):
        return {path: node_macs(graph, path) for path in graph.nodes}


def example_sizes(graph, sizes: dict | None = None) -> dict:
    """The size of every symbolic dim of the inputs at which MACs are counted."""
    names = []
    for name in graph.graph.get("inputs", []):
        for dim in graph.nodes[name]["out_shape"]:
            if isinstance(dim, str) and dim not in names:
                names.append(dim)
    env = env_of(graph, sizes)
    return {n: env.example(n) for n in names}
