"""What a picture folds, so that it stays readable at any network size.

Two rules, shared by the forward and backward views: a block nested deeper than the picture's depth is
drawn as one box, and every copy of a repeated block after the first is drawn as one `x N` summary node
(the first copy is drawn like any other block), so a 12-layer GPT-2 reads as one layer plus '11 more'.
The default depth is the deepest whose picture fits: at most MAX_NODES nodes and MAX_RANKS ranks (a
quick count that rules out hopeless depths without a layout), then, when graphviz is installed, a real
layout (`dot -Tplain`) at most MAX_PX pixels on each side at graphviz's 96 dpi, with fonts at their
normal size: the picture is made smaller by folding, never by shrinking the text.
"""

from __future__ import annotations

import subprocess
from typing import Callable

import networkx as nx

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


def later_copy_of(blocks: dict, path: str) -> str | None:
    """The repeated block of which `path` is the second or a later copy, else None."""
    info = blocks[path]
    parent = info.get("parent") or ""
    if info.get("index") and parent in blocks and blocks[parent].get("repeat"):
        return parent
    return None


def repeat_id(blocks: dict, block: str) -> str:
    """Id of the summary node standing for the copies after the first: 'h.1..11'."""
    return f"{block}.1..{int(blocks[block]['repeat']) - 1}"


def fold_of(blocks: dict, levels: dict, chain: list[str], depth: int) -> tuple[str, str] | None:
    """('repeat', R) when the chain is inside a later copy of repeated block R, ('box', B) when inside
    block B deeper than `depth` (the outermost such block wins), None when drawn as it is.
    A negative depth folds nothing (every copy of every block drawn)."""
    if depth < 0:
        return None
    for b in chain:
        repeated = later_copy_of(blocks, b)
        if repeated is not None:
            return ("repeat", repeated)
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
    """The clusters holding a fold's node: a summary sits in its repeated block, a box in its parent."""
    kind, block = fold
    return block_chain(blocks, block if kind == "repeat" else blocks[block].get("parent") or "")


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
    """The deepest depth (deepest .. 0) whose picture `make(depth)` fits (counts, then layout size),
    with that picture; depth 0 when none does."""
    for d in range(deepest, 0, -1):
        dot = make(d)
        if not fits(*drawn(dot), max_nodes=max_nodes):
            continue
        size = layout_px(dot.to_dot())
        if size is None or max(size) <= MAX_PX:
            return d, dot
    return 0, make(0)
