"""The forward picture, drawn from the networkx graph of a network (never by tracing).

Each spec node is a box with its spec path, op, key arguments and parameter count; each edge carries the
shape of the tensor it moves (symbolic dims kept: 'B x 16 x 32 x 32'); blocks are nested clusters named
`cluster_<block path>`. Blocks deeper than `depth` collapse to one node (a repeated block to one node
marked 'x N') and the copies of a repeated block after the first to one summary node (viz.fold); skip
(residual) edges are dashed and labelled, shared/tied weights are joined by a dotted purple line, inputs
are green ovals (with the training data's preparation as a note above) and outputs orange boxes.
"""

from __future__ import annotations

import networkx as nx
from builder.core.types import record

from viz.dot_render import DotGraph
from viz.fold import (MAX_NODES, block_chain, block_levels, blocks_of, fold_node_id, fold_of, fold_parent, like_of,
                      pick_depth, repeat_id, summarised, summary_words)
from viz.labels import format_count, format_shape, format_value, key_args, wrap_items

COLORS = {
    "input": "#d9f2d9", "output": "#ffe0b3", "param": "#dde8f7", "plain": "#f5f5f5",
    "collapsed": "#fff7cc", "skip": "#2b8cbe", "share": "#7b3294", "prep": "#f0f0f0",
}


def max_depth(g: nx.MultiDiGraph) -> int:
    levels = block_levels(blocks_of(g))
    return max(levels.values(), default=0)


def representative(g: nx.MultiDiGraph, node: str, depth: int, levels: dict) -> str:
    """The id drawn for `node` at `depth`: itself, the outermost block deeper than `depth`, or the
    summary node of the later copies of a repeated block (see viz.fold)."""
    blocks = blocks_of(g)
    fold = fold_of(blocks, levels, block_chain(blocks, record(g, node).block), depth)
    return node if fold is None else fold_node_id(blocks, fold)


def count_visible(g: nx.MultiDiGraph, depth: int) -> int:
    levels = block_levels(blocks_of(g))
    return len({representative(g, n, depth, levels) for n in g.nodes})


def auto_depth(g: nx.MultiDiGraph, max_nodes: int = MAX_NODES) -> int:
    """The deepest depth whose picture fits (viz.fold.pick_depth: counts, then layout size)."""
    return pick_depth(max_depth(g), lambda d: forward_dot(g, d), max_nodes)[0]


def _cluster_label(blocks: dict, path: str) -> str:
    info = blocks[path]
    kind = info.get("block") or "block"
    if info.get("repeat"):
        return f"{path}  ({kind} x {info['repeat']})"
    return f"{path}  ({kind})"


def _node_label(g: nx.MultiDiGraph, n: str) -> tuple[str, dict]:
    a = record(g, n)
    op = a.op
    if op == "input":
        lines = [n, f"input  {format_shape(a.out_shape)}", a.dtype]
        return "\n".join(lines), {"shape": "oval", "fillcolor": COLORS["input"], "style": "filled"}
    lines = [n, op]
    lines += wrap_items(key_args(op, a.args))
    style = {"shape": "box", "style": "rounded,filled", "fillcolor": COLORS["plain"], "tooltip": _details(a)}
    params = a.param_count
    if params:
        frozen = "" if a.trainable_param_count or a.trainable else "  (frozen)"
        lines.append(f"{format_count(params)} params{frozen}")
        style["fillcolor"] = COLORS["param"]
    if a.share:
        lines.append(f"shares weights of {a.share}")
        style.update(color=COLORS["share"], penwidth="2")
    if a.tie:
        for p, target in sorted(a.tie.items()):
            lines.append(f"{p} tied to {target}")
        style.update(color=COLORS["share"], penwidth="2")
    return "\n".join(lines), style


def _details(a) -> str:
    """Hover text of a node (its NodeRecord): op, every argument, shapes in and out, parameters, and
    where it was written."""
    args = ", ".join(f"{k}={format_value(v)}" for k, v in sorted((a.args or {}).items())
                     if not k.startswith("_") and isinstance(v, (int, float, str, bool, tuple, list)))
    shapes = " ; ".join(format_shape(s) for s in a.in_shapes or ())
    lines = [f"op: {a.op}", f"arguments: {args or '-'}", f"in: {shapes or '-'}",
             f"out: {format_shape(a.out_shape)}", f"parameters: {format_count(a.param_count)}"]
    if a.line:
        lines.append(f"spec: {a.source}")
    return "\n".join(lines)


def _collapsed_label(g: nx.MultiDiGraph, fold: tuple[str, str], members: list[str]) -> tuple[str, dict]:
    """A folded block: one 3-D box, or the `x N` summary of a repeated block's later copies."""
    blocks = blocks_of(g)
    kind, path = fold
    info = blocks[path]
    block = info.get("block") or "block"
    params = sum(record(g, m).param_count for m in members)
    if kind == "repeat":  # `path` is one of the later copies the node stands for
        parent = blocks[blocks[path].get("parent") or ""]
        later = summarised(blocks, path)
        lines = [summary_words(blocks, path), f"{parent.get('block') or 'block'} x {len(later)} more "
                 f"(x {parent['repeat']} in all)",
                 f"like {like_of(blocks, path)}: {len(members)} nodes, {format_count(params)} params"]
        return "\n".join(lines), {"shape": "box3d", "style": "filled,bold", "fillcolor": COLORS["collapsed"]}
    head = f"{block} x {info['repeat']}" if info.get("repeat") else block
    lines = [path, head, f"{len(members)} nodes, {format_count(params)} params"]
    return "\n".join(lines), {"shape": "box3d", "style": "filled", "fillcolor": COLORS["collapsed"]}


def skip_edges(nodes: list[str], edges: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Edges u->v where v is also reachable from u through another successor: skip/residual edges."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for u, v in edges:
        if v not in succ[u]:
            succ[u].append(v)
    dg = nx.DiGraph()
    dg.add_nodes_from(nodes)
    dg.add_edges_from((u, v) for u in succ for v in succ[u])
    if not nx.is_directed_acyclic_graph(dg):
        return set()
    bit = {n: 1 << i for i, n in enumerate(nodes)}
    reach: dict[str, int] = {}
    for n in reversed(list(nx.topological_sort(dg))):
        r = 0
        for s in succ[n]:
            r |= bit[s] | reach[s]
        reach[n] = r
    skips = set()
    for u in nodes:
        for v in succ[u]:
            if any(w != v and (reach[w] & bit[v]) for w in succ[u]):
                skips.add((u, v))
    return skips


def _owner_node(g: nx.MultiDiGraph, param_path: str) -> str | None:
    """'wte.weight' -> 'wte' (the longest prefix that is a graph node)."""
    parts = param_path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        cand = ".".join(parts[:i])
        if cand in g.nodes:
            return cand
    return None


def forward_dot(g: nx.MultiDiGraph, depth: int | None = None, rankdir: str = "TB",
                title: str | None = None, preparation: list[str] | None = None) -> DotGraph:
    """The forward picture of graph `g` as a DotGraph.

    depth: None picks the deepest depth whose picture fits (viz.fold); a negative depth expands every
    block. The later copies of a repeated block alike a drawn copy are one summary node (viz.fold). preparation:
    the steps the training data goes through before the float inputs (viz.preparation), drawn above them.
    """
    blocks = blocks_of(g)
    levels = block_levels(blocks)
    deepest = max(levels.values(), default=0)
    if depth is None:
        return pick_depth(deepest, lambda d: forward_dot(g, d, rankdir, title, preparation))[1]
    if depth > deepest:
        depth = deepest
    rep = {n: representative(g, n, depth, levels) for n in g.nodes}
    members: dict[str, list[str]] = {}
    for n, r in rep.items():
        members.setdefault(r, []).append(n)

    name = g.graph.get("name") or "network"
    network = g.graph.get("network")
    head = f"{name}" + (f" / {network}" if network and network != "model" else "")
    shown = list(members)
    dot = DotGraph(f"{name}-forward", {
        "rankdir": rankdir, "label": title or f"{head}: forward graph (depth {'all' if depth < 0 else depth} of {deepest}, "
                                               f"{len(shown)} nodes; data flows along the arrows)",
        "labelloc": "t", "fontname": "Helvetica", "compound": "true", "nodesep": "0.25",
        "ranksep": "0.35",
    }, {"fontname": "Helvetica", "fontsize": "10"}, {"fontname": "Helvetica", "fontsize": "9"}, depth=depth)

    cluster_labels = {b: _cluster_label(blocks, b) for b in blocks}
    cluster_attrs = {b: {"style": "rounded,dashed" if blocks[b].get("repeat") else "rounded",
                         "color": "gray50", "fontsize": "11", "labeljust": "l"} for b in blocks}
    folds = {}
    for n in g.nodes:
        fold = fold_of(blocks, levels, block_chain(blocks, record(g, n).block), depth)
        if fold is not None:
            folds[fold_node_id(blocks, fold)] = fold
    for r in shown:
        if r in folds:  # a folded block
            label, style = _collapsed_label(g, folds[r], members[r])
            chain = fold_parent(blocks, folds[r])
        else:
            label, style = _node_label(g, r)
            chain = block_chain(blocks, record(g, r).block)
        dot.cluster(chain, cluster_labels, cluster_attrs)
        dot.add_node(r, chain, label=label, **style)

    # data edges between drawn nodes (one per distinct source, target, port and shape)
    drawn: dict[tuple, dict] = {}
    for u, v, data in g.edges(data=True):
        ru, rv = rep[u], rep[v]
        if ru == rv:
            continue
        port = data.get("port")
        ports = record(g, u).ports
        text = format_shape(data.get("shape", record(g, u).out_shape))
        if port and ports and port != ports[0]:
            text = f"{port}: {text}"
        slots = record(g, v).slots or []
        slot = data.get("slot")
        if isinstance(slot, int) and slot < len(slots) and len(slots) > 1:
            text = f"{text} -> {slots[slot]}"
        drawn.setdefault((ru, rv, text), {"label": text})
    skips = skip_edges(shown, [(u, v) for u, v, _ in drawn])
    for (u, v, text), attrs in drawn.items():
        if (u, v) in skips:
            attrs.update(style="dashed", color=COLORS["skip"], fontcolor=COLORS["skip"],
                         label=f"skip: {text}", penwidth="1.5")
        dot.add_edge(u, v, **attrs)

    for out_name, node, port in g.graph.get("outputs") or []:
        shape = record(g, node).out_shapes.get(port) if port else record(g, node).out_shape
        out_id = f"out:{out_name}"
        dot.add_node(out_id, [], label=f"output {out_name}\n{format_shape(shape)}", shape="box",
                     style="filled,bold", fillcolor=COLORS["output"])
        dot.add_edge(rep[node], out_id, label=format_shape(shape))

    for inp in g.graph.get("inputs") or []:
        if preparation and inp in rep and not record(g, inp).dtype.startswith(("int", "bool")):
            dot.add_node(f"prep:{inp}", [], label="\n".join(["input preparation (train.data)"] + preparation),
                         shape="note", style="filled", fillcolor=COLORS["prep"])
            dot.add_edge(f"prep:{inp}", inp, style="dashed", label="prepared data")

    # weight sharing and tying: dotted purple lines that do not change the layout
    links = []
    for n in g.nodes:
        a = record(g, n)
        if a.share and a.share in rep:
            links.append((rep[n], rep[a.share], "shares weights"))
        for p, target in sorted((a.tie or {}).items()):
            owner = _owner_node(g, target)
            if owner is not None:
                links.append((rep[n], rep[owner], f"tied: {p} = {target}"))
    for u, v, text in links:
        if u != v:
            dot.add_edge(u, v, label=text, style="dotted", color=COLORS["share"],
                         fontcolor=COLORS["share"], dir="both", arrowhead="odot", arrowtail="odot",
                         constraint="false", penwidth="2")
    return dot
