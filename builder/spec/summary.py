"""The summary table: one row per node (path, op, output shape, parameters, MACs) and exact totals.

Output shapes are ints or dim texts (Python integer expressions over the dim names); MACs are counted
at the example sizes (B = 1, each dim's `example:`, else its minimum) or at the sizes given."""
from __future__ import annotations

from builder.graph import macs as M
from builder.shapes import rules as S
from builder.core.errors import UserError
from builder.spec.reader import Spec
from builder.core.types import records


def summarize(spec: Spec, sizes: dict | None = None) -> dict:
    """Plain data for `build summary --json`; several networks: paths prefixed by the network name."""
    several = len(spec.networks) > 1
    rows, used, dims = [], {}, {}
    _check_sizes(spec, sizes or {})
    for net_name, net in spec.networks.items():
        counts = M.count(net.graph, sizes)
        used.update(M.example_sizes(net.graph, sizes))
        dims.update(net.graph.graph.get("dims") or {})
        for rec in records(net.graph):
            rows.append({
                "path": f"{net_name}.{rec.path}" if several else rec.path,
                "op": rec.op,
                "output_shape": list(rec.out_shape),
                "params": rec.param_count,
                "trainable_params": rec.trainable_param_count,
                "macs": counts[rec.path],
                "block": rec.block,
                "source": rec.source,
                **({"network": net_name} if several else {}),
            })
    return {"name": spec.name, "total_params": spec.total_params, "trainable_params": spec.trainable_params,
            "total_macs": sum(r["macs"] for r in rows), "macs_at": used, "dims": dims,
            "networks": list(spec.networks), "nodes": rows}


def _check_sizes(spec: Spec, sizes: dict) -> None:
    """--set-dim sizes must name input dims and respect their declarations."""
    for net in spec.networks.values():
        known = M.example_sizes(net.graph)
        dims = net.graph.graph.get("dims") or {}
        for name, v in sizes.items():
            if name not in known:
                raise UserError(f"--set-dim {name}: not a symbolic dim of the inputs (they have: "
                                f"{', '.join(known) or 'none'})")
            info = dims.get(name)
            if info and (v < info["min"] or (info["max"] and v > info["max"]) or v % info["multiple_of"]):
                raise UserError(f"--set-dim {name}={v}: the network takes {name} in [{info['min']}, "
                                f"{info['max'] or 'inf'}], multiple of {info['multiple_of']}")


def parse_sizes(items: list[str]) -> dict:
    """['H=512', 'W=256'] -> {'H': 512, 'W': 256} (one-line errors for anything else)."""
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if not name.strip().isidentifier() or not value.strip().isdigit() or int(value) < 1:
            raise UserError(f"--set-dim expects NAME=SIZE with a positive size, got {item!r}")
        out[name.strip()] = int(value)
    return out


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def format_table(summary: dict) -> str:
    header = ("node", "op", "output shape", "params", "MACs")
    rows = [(r["path"], r["op"], S.fmt(r["output_shape"]), f"{r['params']:,}", _human(r["macs"]))
            for r in summary["nodes"]]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(header), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    out.append("  ".join("-" * w for w in widths))
    nontrain = summary["total_params"] - summary["trainable_params"]
    at = ", ".join(f"{k}={v}" for k, v in summary["macs_at"].items())
    out.append(f"{summary['name']}: {summary['total_params']:,} parameters "
               f"({summary['trainable_params']:,} trainable, {nontrain:,} frozen), "
               f"{_human(summary['total_macs'])} MACs per forward" + (f" at {at}" if at else ""))
    needed = [f"{k} >= {v['min']} (needed by {v['min_needed_by']})" for k, v in summary["dims"].items()
              if v.get("min_needed_by")]
    if needed:
        out.append("smallest sizes the network takes: " + ", ".join(needed))
    return "\n".join(out)
