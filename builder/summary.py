"""The summary table: one row per node (path, op, output shape, parameters, MACs) and exact totals."""
from __future__ import annotations

from . import shapes as S
from .spec import Spec
from .types import records


def summarize(spec: Spec) -> dict:
    """Plain data for `build summary --json`; several networks: paths prefixed by the network name."""
    several = len(spec.networks) > 1
    rows = []
    for net_name, net in spec.networks.items():
        for rec in records(net.graph):
            rows.append({
                "path": f"{net_name}.{rec.path}" if several else rec.path,
                "op": rec.op,
                "output_shape": list(rec.out_shape),
                "params": rec.param_count,
                "trainable_params": rec.trainable_param_count,
                "macs": rec.macs,
                "block": rec.block,
                "source": rec.source,
                **({"network": net_name} if several else {}),
            })
    return {"name": spec.name, "total_params": spec.total_params, "trainable_params": spec.trainable_params,
            "total_macs": sum(r["macs"] for r in rows), "networks": list(spec.networks), "nodes": rows}


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
    out.append(f"{summary['name']}: {summary['total_params']:,} parameters "
               f"({summary['trainable_params']:,} trainable, {nontrain:,} frozen), "
               f"{_human(summary['total_macs'])} MACs per example (symbolic dims = 1)")
    return "\n".join(out)
