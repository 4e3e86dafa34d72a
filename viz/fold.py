"""What a picture folds, so that it stays readable at any network size.

Two rules, shared by the forward and backward views: a block nested deeper than the picture's depth is
drawn as one box, and the later copies of a repeated block that are alike a drawn copy are drawn as one
`x N` summary node (the first copy of each kind is drawn like any other block), so a 12-layer GPT-2 reads
as one layer plus '11 more'. Copies are alike when their nodes, wiring, arguments and parameter shapes
are the same (rates, eps and other float arguments aside): Swin's shifted block is drawn beside the
unshifted one, never summarised as 'like' it (`blocks_of` adds each copy's `like`).

The default picture is the whole network when it fits; otherwise the deepest depth whose picture fits:
at most MAX_NODES nodes and MAX_RANKS ranks (a quick count that rules out hopeless depths without a
layout), then, when graphviz is installed, a real layout (`dot -Tplain`) at most MAX_PX pixels on each
side at graphviz's 96 dpi, with fonts at their normal size: the picture is made smaller by folding, never
by shrinking the text.
"""

from __future__ import annotations

import subprocess
import weakref
from typing import Callable

import networkx as nx

from builder.core.types import records

MAX_NODES = 120  # visible nodes of a default picture (the limit asserted over the zoo is 150)
MAX_RANKS = 60  # nodes on the longest path: beyond this no layout is tried
MAX_PX = 3900  # pixels on each side of a default picture at 96 dpi (the limit asserted is 4,000)
LAYOUT_TIMEOUT = 20.0  # seconds one trial layout may take before its depth counts as too big


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


_LIKENESS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def blocks_of(graph) -> dict:
    """The graph's block table (`graph.graph["blocks"]`) with, for each copy of a repeated block, `like`:
    the first copy alike it (itself when it is the first of its kind). Computed once per graph."""
    if graph is None:
        return {}
    found = _LIKENESS.get(graph)
    if found is None:
        blocks = graph.graph.get("blocks") or {}
        sig = _signatures(graph, blocks)
        found = {b: dict(info) for b, info in blocks.items()}
        for b, info in blocks.items():
            if info.get("repeat"):
                first: dict = {}
                for c in copies(blocks, b):
                    found[c]["like"] = first.setdefault(sig.get(c, ()), c)
        _LIKENESS[graph] = found
    return found


def _signatures(graph, blocks: dict) -> dict:
    """Copy path -> what makes two copies alike: each node's path inside the copy, op, sources (inside
    the copy, or 'outside'), arguments but floats, and parameter shapes."""
    copy_paths = {c for b, info in blocks.items() if info.get("repeat") for c in copies(blocks, b)}
    sig: dict[str, list] = {c: [] for c in copy_paths}
    for r in records(graph):
        for c in block_chain(blocks, r.block):
            if c not in copy_paths:
                continue
            inside = lambda p: p[len(c) + 1:] if p.startswith(c + ".") else "<outside>"  # noqa: E731
            args = sorted((k, "<float>" if isinstance(v, float) else repr(v)) for k, v in (r.args or {}).items())
            sig[c].append((inside(r.path), r.op, tuple((inside(s), port) for s, port in r.sources), tuple(args),
                           tuple(sorted((k, tuple(v)) for k, v in (r.param_shapes or {}).items()))))
    return {c: tuple(v) for c, v in sig.items()}


def like_of(blocks: dict, copy: str) -> str:
    """The drawn copy that `copy` is summarised as being like (copy 0 for a table without `like`)."""
    info = blocks[copy]
    return info.get("like") or f"{info.get('parent')}.0"


def later_copy_of(blocks: dict, path: str) -> str | None:
    """The repeated block of which `path` is a later copy alike an earlier one (so it is summarised),
    else None."""
    info = blocks[path]
    parent = info.get("parent") or ""
    if info.get("index") and parent in blocks and blocks[parent].get("repeat") and like_of(blocks, path) != path:
        return parent
    return None


def summarised(blocks: dict, copy: str) -> list[str]:
    """The later copies summarised in one node with `copy`: those alike the same drawn copy."""
    like = like_of(blocks, copy)
    parent = blocks[copy].get("parent") or ""
    return [c for c in copies(blocks, parent) if c != like and like_of(blocks, c) == like]


def repeat_id(blocks: dict, copy: str) -> str:
    """Id of the summary node standing for `copy` and the later copies alike it: 'h.1..11', 'h.2,4'."""
    parent = blocks[copy].get("parent") or ""
    idx = [int(c.rsplit(".", 1)[1]) for c in summarised(blocks, copy)]
    if idx == list(range(idx[0], idx[-1] + 1)):
        return f"{parent}.{idx[0]}..{idx[-1]}" if len(idx) > 1 else f"{parent}.{idx[0]}"
    return f"{parent}.{','.join(map(str, idx))}"


def summary_words(blocks: dict, copy: str) -> str:
    """The copies a summary node stands for, as its label says them: 'h.1 .. h.11', 'h.1', 'h.2, h.4'."""
    later = summarised(blocks, copy)
    idx = [int(c.rsplit(".", 1)[1]) for c in later]
    if len(later) > 1 and idx == list(range(idx[0], idx[-1] + 1)):
        return f"{later[0]} .. {later[-1]}"
    return ", ".join(later)


def fold_of(blocks: dict, levels: dict, chain: list[str], depth: int) -> tuple[str, str] | None:
    """('repeat', C) when the chain is inside C, a later copy of a repeated block alike an earlier copy,
    ('box', B) when inside block B deeper than `depth` (the outermost such block wins), None when drawn
    as it is. A negative depth folds nothing (every copy of every block drawn)."""
    if depth < 0:
        return None
    for b in chain:
        if later_copy_of(blocks, b) is not None:
            return ("repeat", b)
        if levels[b] > depth:
            return ("box", b)
    return None


def folded_blocks(blocks: dict, depth: int) -> set:
    """Every block path folded at `depth` (the interactive view shows them closed at first)."""
    levels = block_levels(blocks)
    return {b for b in blocks if fold_of(blocks, levels, block_chain(blocks, b), depth) is not None}


def fold_node_id(blocks: dict, fold: tuple[str, str]) -> str:
    kind, block = fold
    return repeat_id(blocks, block) if kind == "repeat" else block


def fold_parent(blocks: dict, fold: tuple[str, str]) -> list[str]:
    """The clusters holding a fold's node: a summary and a box both sit in the block's parent."""
    kind, block = fold
    return block_chain(blocks, blocks[block].get("parent") or "")


def copies(blocks: dict, block: str) -> list[str]:
    """The copy paths of repeated block `block`, in order."""
    return [f"{block}.{i}" for i in range(int(blocks[block].get("repeat") or 0)) if f"{block}.{i}" in blocks]


def ranks(nodes, edges) -> int:
    """Nodes on the longest path of the drawn graph (the number of ranks graphviz needs)."""
    dg = nx.DiGraph()
    dg.add_nodes_from(nodes)
    dg.add_edges_from((u, v) for u, v in edges if u != v)
    if not nx.is_directed_acyclic_graph(dg):
        return len(dg)
    return nx.dag_longest_path_length(dg) + 1 if len(dg) else 0


def fits(nodes, edges, max_nodes: int = MAX_NODES, max_ranks: int = MAX_RANKS) -> bool:
    nodes = list(nodes)
    return len(nodes) <= max_nodes and ranks(nodes, edges) <= max_ranks


def drawn(dot) -> tuple[list, list]:
    """The nodes (not the legend, not the captions) and the rank-making edges of a DotGraph."""
    nodes = [n for n, a in dot.node_attrs.items() if "#legend" not in n and a.get("class") != "caption"]
    beside = dot.side_by_side_pairs()
    edges = [(u, v) for u, v, a in dot.edges
             if a.get("constraint") != "false" and a.get("style") != "invis" and (u, v) not in beside]
    return nodes, edges


def layout_px(dot_text: str) -> tuple[float, float] | None:
    """Width and height in pixels (96 dpi) of graphviz's layout; None without graphviz or when it fails.
    A layout that takes over LAYOUT_TIMEOUT seconds counts as infinitely large."""
    from viz.dot_render import dot_binary

    exe = dot_binary()
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, "-Tplain"], input=dot_text, capture_output=True, text=True,
                              timeout=LAYOUT_TIMEOUT)
    except subprocess.TimeoutExpired:
        return (float("inf"), float("inf"))
    head = proc.stdout.split("\n", 1)[0].split()
    if proc.returncode != 0 or len(head) < 4 or head[0] != "graph":
        return None
    scale, pad = float(head[1]), 2 * 4 / 72  # graphviz pads the drawing with 4 points on each side
    return (float(head[2]) * scale + pad) * 96, (float(head[3]) * scale + pad) * 96


def pick_depth(deepest: int, make: Callable[[int], object], max_nodes: int = MAX_NODES) -> tuple[int, object]:
    """-1 (nothing folded) when the whole picture `make(-1)` fits, else the deepest depth (deepest .. 0)
    whose picture fits (counts, then layout size), with that picture; depth 0 when none does."""
    for d in [-1] + list(range(deepest, 0, -1)):
        dot = make(d)
        if not fits(*drawn(dot), max_nodes=max_nodes):
            continue
        size = layout_px(dot.to_dot())
        if size is None or max(size) <= MAX_PX:
            return d, dot
    return 0, make(0)
