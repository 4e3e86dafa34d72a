"""The backward picture: the autograd graph of one step, with the spec's names and clusters.

Root: the loss. Operation nodes: what each autograd node computes, in plain words, inside the cluster of
the spec node that created it (clusters are named `cluster_<spec path>`, nested in the block clusters of
the forward picture). Leaves: the parameters (spec path and shape) and the inputs. Edges point the way
gradients flow: from the loss towards the leaves. Each node shows, micrograd-style, the shape of its
forward value and the norm of the gradient that reached it. Bookkeeping nodes are folded unless `full`;
`grads` colours parameters and clusters by gradient norm and flags unhealthy gradients.
"""

from __future__ import annotations

import math

import networkx as nx
from builder.types import record, records

from viz.autograd_walk import BackwardTrace
from viz.dot_render import DotGraph
from viz.grad_fn_names import is_bookkeeping
from viz.grad_heat import FLAG_TEXT, add_legend, heat_color, heat_style, judge
from viz.forward import _cluster_label, block_chain
from viz.labels import format_shape

LOSS_CLUSTER = "#loss"  # '#' never starts a spec path
COLORS = {"root": "#ffb366", "param": "#dde8f7", "input": "#d9f2d9", "op": "white", "book": "#eeeeee"}


def format_norm(norm: float | None) -> str:
    if norm is None:
        return "None"
    if not math.isfinite(norm):
        return str(norm)
    return f"{norm:.2e}"


def drawn_ops(trace: BackwardTrace, full: bool) -> set[str]:
    """Ids of the operation nodes drawn: all with `full`; else no AccumulateGrad and no bookkeeping,
    except that a spec node whose nodes are all bookkeeping keeps them (so its cluster stays)."""
    if full:
        return set(trace.ops)
    real_paths = {op.path for op in trace.ops.values() if not is_bookkeeping(op.kind)}
    return {i for i, op in trace.ops.items()
            if op.kind != "AccumulateGrad" and (not is_bookkeeping(op.kind) or op.path not in real_paths)}


def folded_edges(trace: BackwardTrace, drawn: set[str]) -> list[tuple[str, str]]:
    """Edges between drawn nodes and leaves, with folded nodes contracted away (order kept, no repeats)."""
    succ: dict[str, list[str]] = {i: [] for i in trace.ops}
    for u, v in trace.edges:
        if v not in succ[u]:
            succ[u].append(v)
    memo: dict[str, list[str]] = {}

    def targets(v: str) -> list[str]:
        """What an edge into `v` reaches among drawn nodes and leaves."""
        op = trace.ops[v]
        if v in drawn:
            return [v]
        if op.kind == "AccumulateGrad":
            return [op.leaf]
        if v not in memo:
            memo[v] = []  # guards against cycles (never expected in autograd graphs)
            out = []
            for w in succ[v]:
                for t in targets(w):
                    if t not in out:
                        out.append(t)
            memo[v] = out
        return memo[v]

    edges = []
    for u in trace.ops:
        if u not in drawn:
            continue
        if trace.ops[u].kind == "AccumulateGrad":
            edges.append((u, trace.ops[u].leaf))
            continue
        seen = []
        for v in succ[u]:
            for t in targets(v):
                if t not in seen:
                    seen.append(t)
        edges.extend((u, t) for t in seen)
    return edges


def cluster_chain(path: str, graph: nx.MultiDiGraph | None) -> list[str]:
    """Clusters holding the nodes of spec path `path`: its block clusters, then its own."""
    if not path:
        return [LOSS_CLUSTER]
    if graph is not None and path in graph.nodes:
        blocks = graph.graph.get("blocks") or {}
        return block_chain(blocks, record(graph, path).block) + [path]
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _cluster_labels(trace: BackwardTrace, graph: nx.MultiDiGraph | None) -> dict:
    blocks = (graph.graph.get("blocks") or {}) if graph is not None else {}
    labels = {LOSS_CLUSTER: "loss computation"}
    for path, kind in trace.module_types.items():
        if path in blocks:
            labels[path] = _cluster_label(blocks, path)
        elif graph is not None and path in graph.nodes:
            labels[path] = f"{path}  ({record(graph, path).op})"
        else:
            labels[path] = f"{path}  ({kind})"
    for path in blocks:
        labels.setdefault(path, _cluster_label(blocks, path))
    if graph is not None:
        for r in records(graph):
            if r.share:
                labels[r.path] = f"{r.path}  ({r.op}, shares {r.share})"
    for path, v in trace.values.items():  # micrograd's lesson: the forward value beside the gradient
        if path in labels:
            labels[path] += f"\nvalue {format_shape(v.shape)}: mean {v.mean:.3g}, std {v.std:.3g}"
    return labels


def backward_dot(trace: BackwardTrace, graph: nx.MultiDiGraph | None = None, full: bool = False,
                 grads: bool = False, rankdir: str = "TB", title: str | None = None,
                 name: str = "network") -> DotGraph:
    drawn = drawn_ops(trace, full)
    edges = folded_edges(trace, drawn)
    labels = _cluster_labels(trace, graph)
    n_folded = len(trace.ops) - len(drawn)
    head = title or (f"{name}: backward graph of one step (loss {trace.loss:.4g}); gradients flow along "
                     f"the arrows from the loss (root) to the leaves (parameters, inputs); "
                     f"{len(drawn)} operation nodes" + (f", {n_folded} bookkeeping nodes folded"
                                                         if n_folded else ""))
    dot = DotGraph(f"{name}-backward", {
        "rankdir": rankdir, "label": head, "labelloc": "t", "fontname": "Helvetica", "nodesep": "0.25",
        "ranksep": "0.35",
    }, {"fontname": "Helvetica", "fontsize": "10"}, {"fontname": "Helvetica", "fontsize": "9",
                                                      "color": "#b2182b"})
    cl_attrs = {}
    dot.add_node("loss", [], label=f"loss (root)\n{trace.loss_name} = {trace.loss:.4g}",
                 shape="doubleoctagon", style="filled", fillcolor=COLORS["root"])

    largest = max((lf.grad.norm for lf in trace.leaves.values() if lf.kind == "param" and lf.grad
                   and lf.grad.norm is not None and math.isfinite(lf.grad.norm)), default=0.0)
    for op_id, op in trace.ops.items():
        if op_id not in drawn:
            continue
        lines = [op.words, op.kind]
        if op.shape is not None:
            lines.append(f"value {format_shape(op.shape)}")
        if op.grad is not None:
            lines.append(f"|grad| {format_norm(op.grad.norm)}")
        book = is_bookkeeping(op.kind)
        leaf = trace.leaves.get(op.leaf) if op.leaf else None
        chain = [] if leaf is not None and leaf.kind == "input" else cluster_chain(op.path, graph)
        dot.cluster(chain, labels, cl_attrs)
        dot.add_node(op_id, chain, label="\n".join(lines), shape="box",
                     style="rounded,filled", fillcolor=COLORS["book"] if book else COLORS["op"],
                     fontsize="9" if book else "10")
    dot.add_edge("loss", trace.root)

    for leaf_id, leaf in trace.leaves.items():
        if leaf.kind == "param":
            lines = [leaf_id, f"parameter {format_shape(leaf.shape)}"]
            lines += [f"also {n} (tied)" for n in leaf.names[1:]]
            attrs = {"shape": "box", "style": "filled", "fillcolor": COLORS["param"]}
            chain = cluster_chain(leaf.path, graph)
        else:
            lines = [leaf_id, f"input {format_shape(leaf.shape)}"]
            attrs = {"shape": "oval", "style": "filled", "fillcolor": COLORS["input"]}
            chain = []
        norm = leaf.grad.norm if leaf.grad is not None else None
        value = f"|w| {format_norm(leaf.norm)}  " if leaf.kind == "param" else ""
        if leaf.requires_grad:
            lines.append(f"{value}|grad| {format_norm(norm)}")
        elif leaf.kind == "input":
            lines.append("no gradient (not differentiable)")
        else:  # frozen on purpose (trainable: false): no gradient is expected, not a fault
            lines.append(f"{value}frozen (requires_grad=False)")
            attrs.update(fillcolor="#eeeeee", style="filled,dashed")
        if grads and leaf.kind == "param" and leaf.requires_grad:
            flag = judge(norm, largest)
            attrs.update(heat_style(norm, flag))
            if flag:
                lines.append(FLAG_TEXT[flag])
        dot.cluster(chain, labels, cl_attrs)
        dot.add_node(leaf_id, chain, label="\n".join(lines), **attrs)

    for u, v in edges:
        dot.add_edge(u, v)
    _attach_integer_inputs(dot, trace, graph, drawn)
    if grads:
        _color_clusters(dot, trace, graph)
        add_legend(dot)
    return dot


def _attach_integer_inputs(dot: DotGraph, trace: BackwardTrace, graph, drawn: set[str]) -> None:
    """Inputs that carry no gradient (token ids) still show where they enter, with a dotted line."""
    if graph is None:
        return
    for leaf_id, leaf in trace.leaves.items():
        if leaf.kind != "input" or leaf.requires_grad or leaf_id not in graph.nodes:
            continue
        for consumer in dict.fromkeys(graph.successors(leaf_id)):
            ops = [i for i, op in trace.ops.items() if op.path == consumer and i in drawn]
            if ops:
                dot.add_edge(ops[-1], leaf_id, style="dotted", arrowhead="none", color="gray50",
                             label="no gradient")


def _color_clusters(dot: DotGraph, trace: BackwardTrace, graph) -> None:
    """Each cluster is tinted by the norm of the gradients of all parameters inside it."""
    sq: dict[str, float] = {}
    bad: dict[str, str] = {}
    for leaf in trace.leaves.values():
        if leaf.kind != "param" or not leaf.requires_grad:  # frozen parameters do not count
            continue
        norm = leaf.grad.norm if leaf.grad is not None else None
        for c in cluster_chain(leaf.path, graph):
            if norm is None:
                bad.setdefault(c, "none")
            elif not math.isfinite(norm):
                bad[c] = "nan"
            else:
                sq[c] = sq.get(c, 0.0) + norm * norm
    stack = list(dot.root.children.values())
    while stack:
        c = stack.pop()
        stack.extend(c.children.values())
        if c.name not in sq and c.name not in bad:  # no parameters: say so, not the parent's colour
            c.attrs.update(style="rounded,filled", fillcolor="white", color="gray50", penwidth="1")
            continue
        if bad.get(c.name) == "nan":
            c.attrs.update(style="rounded,filled,bold", fillcolor="#ff00ff40", color="#ff00ff")
            c.label += "\n|grad| NaN/Inf"
            continue
        if c.name not in sq:  # only parameters that no gradient reached
            c.attrs.update(style="rounded,filled,dashed", fillcolor="#d9d9d940", color="gray40", penwidth="2")
            c.label += "\nno gradient"
            continue
        norm = math.sqrt(sq.get(c.name, 0.0))
        color = heat_color(norm)
        c.attrs.update(style="rounded,filled", fillcolor=color + "40", color=color, penwidth="2")
        c.label += f"\n|grad| {format_norm(norm)}"
