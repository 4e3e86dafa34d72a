"""The forward picture, drawn from the networkx graph of a network (never by tracing).

Each spec node is a box with its spec path, op, key arguments and parameter count; each edge carries the
shape of the tensor it moves (symbolic dims kept: 'B x 16 x 32 x 32'); blocks are nested clusters named
`cluster_<block path>`. Blocks deeper than `depth` collapse to one node (a repeated block to one node
marked 'x N'); skip (residual) edges are dashed and labelled, shared/tied weights are joined by a dotted
purple line, inputs are green ovals and outputs orange boxes.
"""

from __future__ import annotations

import networkx as nx
from builder.types import record

from viz.dot_render import DotGraph
from viz.labels import format_count, format_shape, key_args, wrap_items

AUTO_MAX_NODES = 120  # the automatic depth is the deepest one whose picture stays within this
COLORS = {
    "input": "#d9f2d9", "output": "#ffe0b3", "param": "#dde8f7", "plain": "#f5f5f5",
    "collapsed": "#fff7cc", "skip": "#2b8cbe", "share": "#7b3294",
}


def block_levels(blocks: dict) -> dict[str, int]:
    """Nesting level of each block path: a top-level block is 1, a block inside it 2, ...

    The copies `stage1.0`, `stage1.1` of a repeated block `stage1` sit one level below `stage1`.
    """
    levels: dict[str, int] = {}

    def level(path: str) -> int:
        if path not in levels:
            parent = blocks[path].get("parent") or ""
            levels[path] = 1 + (level(parent) if parent in blocks else 0)
        return levels[path]

    for path in blocks:
        level(path)
    return levels


def block_chain(blocks: dict, path: str) -> list[str]:
    """Block paths from outermost to `path` itself ([] for the top level '')."""
    chain = []
    while path and path in blocks:
        chain.append(path)
        path = blocks[path].get("parent") or ""
    return chain[::-1]


def max_depth(g: nx.MultiDiGraph) -> int:
    levels = block_levels(g.graph.get("blocks") or {})
    return max(levels.values(), default=0)


def representative(g: nx.MultiDiGraph, node: str, depth: int, levels: dict) -> str:
    """The id drawn for `node` at `depth`: itself, or the outermost block deeper than `depth`."""
    blocks = g.graph.get("blocks") or {}
    for b in block_chain(blocks, record(g, node).block):
        if levels[b] > depth:
            return b
    return node


def count_visible(g: nx.MultiDiGraph, depth: int) -> int:
    levels = block_levels(g.graph.get("blocks") or {})
    return len({representative(g, n, depth, levels) for n in g.nodes})


def auto_depth(g: nx.MultiDiGraph, max_nodes: int = AUTO_MAX_NODES) -> int:
    """The deepest depth whose picture has at most `max_nodes` nodes (0 when none does)."""
    best = 0
    for d in range(max_depth(g) + 1):
        if count_visible(g, d) <= max_nodes:
            best = d
    return best


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
    style = {"shape": "box", "style": "rounded,filled", "fillcolor": COLORS["plain"]}
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


def _collapsed_label(g: nx.MultiDiGraph, path: str, members: list[str]) -> tuple[str, dict]:
    info = g.graph["blocks"][path]
    kind = info.get("block") or "block"
    head = f"{kind} x {info['repeat']}" if info.get("repeat") else kind
    params = sum(record(g, m).param_count for m in members)
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
                title: str | None = None) -> DotGraph:
    """The forward picture of graph `g` as a DotGraph.

    depth: None picks the deepest depth that keeps the picture within AUTO_MAX_NODES nodes; a negative
    depth expands every block.
    """
    blocks = g.graph.get("blocks") or {}
    levels = block_levels(blocks)
    deepest = max(levels.values(), default=0)
    if depth is None:
        depth = auto_depth(g)
    elif depth < 0 or depth > deepest:
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
        "rankdir": rankdir, "label": title or f"{head}: forward graph (depth {depth} of {deepest}, "
                                               f"{len(shown)} nodes; data flows along the arrows)",
        "labelloc": "t", "fontname": "Helvetica", "compound": "true", "nodesep": "0.25",
        "ranksep": "0.35",
    }, {"fontname": "Helvetica", "fontsize": "10"}, {"fontname": "Helvetica", "fontsize": "9"})

    cluster_labels = {b: _cluster_label(blocks, b) for b in blocks}
    cluster_attrs = {b: {"style": "rounded,dashed" if blocks[b].get("repeat") else "rounded",
                         "color": "gray50", "fontsize": "11"} for b in blocks}
    for r in shown:
        if r in blocks:  # a collapsed block
            label, style = _collapsed_label(g, r, members[r])
            chain = block_chain(blocks, blocks[r].get("parent") or "")
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
