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
from builder.core.types import record, records

from viz.autograd_walk import BackwardTrace
from viz.backward_fold import fold_backward
from viz.dot_render import DotGraph
from viz.grad_fn_names import is_bookkeeping
from viz.grad_heat import FLAG_STYLE, FLAG_TEXT, add_legend, heat_color, heat_style, judge, leaf_flag, node_norms, param_scale
from viz.fold import block_chain, block_levels, blocks_of
from viz.forward import _cluster_label
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
        blocks = blocks_of(graph)
        return block_chain(blocks, record(graph, path).block) + [path]
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _cluster_labels(trace: BackwardTrace, graph: nx.MultiDiGraph | None) -> dict:
    blocks = blocks_of(graph)
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
                 name: str = "network", depth: int | None = None) -> DotGraph:
    """The backward picture, folded like the forward one (viz.backward_fold) when `graph` is given.

    rankdir names the order of the spec: 'TB' puts the inputs at the top and the loss at the bottom, the
    arrows (gradients) pointing up, so the picture reads in the spec's order beside the forward one."""
    drawn = drawn_ops(trace, full)
    edges = folded_edges(trace, drawn)
    labels = _cluster_labels(trace, graph)
    n_folded = len(trace.ops) - len(drawn)
    head = title or (f"{name}: backward graph of one step (loss {trace.loss:.4g}); gradients flow along "
                     f"the arrows from the loss (root) to the leaves (parameters, inputs); "
                     f"{len(drawn)} operation nodes" + (f", {n_folded} bookkeeping nodes folded"
                                                         if n_folded else ""))
    flipped = {"TB": "BT", "BT": "TB", "LR": "RL", "RL": "LR"}[rankdir]
    dot = DotGraph(f"{name}-backward", {
        "rankdir": flipped, "label": head, "labelloc": "t", "fontname": "Helvetica", "nodesep": "0.25",
        "ranksep": "0.35",
    }, {"fontname": "Helvetica", "fontsize": "10"}, {"fontname": "Helvetica", "fontsize": "9",
                                                      "color": "#b2182b"})
    cl_attrs = _spec_order_clusters(dot, graph, labels)
    dot.add_node("loss", [], label=f"loss (root)\n{trace.loss_name} = {trace.loss:.4g}",
                 shape="doubleoctagon", style="filled", fillcolor=COLORS["root"])

    scale, nodes = param_scale(trace, graph), node_norms(trace)
    for op_id, op in trace.ops.items():
        if op_id not in drawn:
            continue
        lines = [op.words, op.kind]
        if op.shape is not None:
            lines.append(f"value {_batch_major(op, trace)}")
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
            lines = [f"{leaf.path}: {leaf.torch_name}" if leaf.path else leaf_id,
                     f"parameter {format_shape(leaf.shape)}"]
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
            flag = leaf_flag(leaf, scale, nodes)
            attrs.update(heat_style(norm, flag))
            if flag:
                lines.append(FLAG_TEXT[flag])
        dot.cluster(chain, labels, cl_attrs)
        dot.add_node(leaf_id, chain, label="\n".join(lines), **attrs)

    for u, v in edges:
        dot.add_edge(u, v)
    _params_beside_ops(dot, trace, graph, edges)
    _attach_integer_inputs(dot, trace, graph, drawn)
    if grads:
        _color_clusters(dot, trace, graph)
        add_legend(dot)
    dot.prune()
    if graph is None:
        _captions_beside_nodes(dot, graph)
        return dot
    folded, used = fold_backward(dot, trace, graph, depth, drawn, grads,
                                 finish=lambda d: _captions_beside_nodes(d, graph))
    deepest = max(block_levels(blocks_of(graph)).values(), default=0)
    folded.graph_attrs["label"] += f"; depth {'all' if used < 0 else used} of {deepest}"
    folded.depth = used
    return folded


def _spec_order_clusters(dot: DotGraph, graph, labels: dict) -> dict:
    """Creates the clusters of every spec node in the spec's order (the walk from the loss meets them in
    reverse), so graphviz and the HTML view lay them out in that order; returns the cluster attributes."""
    attrs: dict = {}
    if graph is None:
        return attrs
    for path in graph.nodes:
        if record(graph, path).op != "input":
            for c in cluster_chain(path, graph):
                attrs[c] = {"labeljust": "l"}
            dot.cluster(cluster_chain(path, graph), labels, attrs)
    return attrs


def _captions_beside_nodes(dot: DotGraph, graph) -> DotGraph:
    """The title of a cluster holding nodes of its own becomes a caption on the row of one of them (a
    spec node's: its operation nearest the loss; a block's: its folded box nearest the loss) instead of
    the cluster's label, so that no edge runs through it. Clusters of clusters keep their titles, and
    so do the loss and legend clusters ('#...'). Returns `dot`."""
    blocks = blocks_of(graph)
    stack = list(dot.root.children.values())
    while stack:
        c = stack.pop()
        stack.extend(c.children.values())
        if c.name.startswith("#") or not c.nodes:
            continue
        beside, cap = c.nodes[-1] if c.name in blocks else c.nodes[0], f"{c.name}:caption"
        dot.node_attrs[cap] = {"label": c.attrs.get("label") or c.label, "shape": "plaintext",
                               "fontsize": "10", "class": "caption"}
        c.nodes.insert(0, cap)
        c.order.insert(0, ("node", cap))
        group = next((g for g in c.same_rank if beside in g), None)
        if group is not None:
            group.insert(0, cap)
        else:
            c.same_rank.append([cap, beside])
        c.attrs["label"] = ""
    return dot


def _batch_major(op, trace: BackwardTrace) -> str:
    """The op's value shape in the layout of its spec node's output: an RNN inside torch works on
    time-major tensors (T x B x H) while the spec node (batch_first) gives B x T x H."""
    value = trace.values.get(op.path)
    shape = tuple(op.shape)
    if value is not None and len(shape) >= 3 and tuple(value.shape) != shape and \
            (shape[1], shape[0], *shape[2:]) == tuple(value.shape):
        return f"{format_shape(value.shape)} (time-major inside torch)"
    return format_shape(shape)


def _params_beside_ops(dot: DotGraph, trace: BackwardTrace, graph, edges) -> None:
    """Each operation's parameters sit on its rank, beside it: one rank per operation keeps the picture
    a straight column in the spec's order instead of a staircase."""
    groups: dict[str, list[str]] = {}
    placed = set()
    for u, v in edges:
        leaf = trace.leaves.get(v)
        if leaf is None or leaf.kind != "param" or v in placed or u not in trace.ops:
            continue
        if cluster_chain(leaf.path, graph) == cluster_chain(trace.ops[u].path, graph):
            groups.setdefault(u, [u]).append(v)
            placed.add(v)
    for op_id, group in groups.items():
        dot.cluster(cluster_chain(trace.ops[op_id].path, graph)).same_rank.append(group)


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
    scale = param_scale(trace, graph)
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
        flag = judge(norm, scale, c.name)
        color = FLAG_STYLE[flag]["fillcolor"] if flag in ("vanishing", "exploding") else heat_color(norm)
        c.attrs.update(style="rounded,filled", fillcolor=color + "40", color=color, penwidth="2")
        c.label += f"\n|grad| {format_norm(norm)}" + (f"  {FLAG_TEXT[flag]}" if flag else "")
