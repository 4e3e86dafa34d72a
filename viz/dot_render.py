"""Deterministic DOT text, and rendering it with the graphviz `dot` binary.

A `DotGraph` is a tree of clusters holding nodes, plus a flat list of edges. `to_dot()` writes it in one
fixed order (insertion order, attributes sorted by name), so the same picture gives byte-identical text.
`parse_dot()` reads that text back (nodes, edges, cluster membership) for tests and tools.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from builder.core.io_utils import atomic_output, atomic_write_text

IMAGE_FORMATS = ("svg", "png", "pdf")
FORMATS = IMAGE_FORMATS + ("dot",)
INSTALL_HINT = (
    "the graphviz `dot` program is not installed; install it with `sudo apt-get install graphviz` "
    "(Debian/Ubuntu), `brew install graphviz` (macOS) or `conda install graphviz`, then run the same "
    "command again, or render the .dot yourself with `dot -Tsvg FILE.dot -o FILE.svg`"
)


def quote(text: object) -> str:
    """A DOT double-quoted string; newlines become centred line breaks."""
    s = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{s}"'


class HtmlLabel(str):
    """A graphviz HTML-like label: written between < and > instead of quotes."""


def format_attrs(attrs: dict) -> str:
    items = [f"{k}=<{v}>" if isinstance(v, HtmlLabel) else f"{k}={quote(v)}"
             for k, v in sorted(attrs.items()) if v is not None]
    return f" [{', '.join(items)}]" if items else ""


@dataclass
class Cluster:
    name: str  # id without the "cluster_" prefix
    label: str = ""
    attrs: dict = field(default_factory=dict)
    nodes: list = field(default_factory=list)  # node ids in insertion order
    children: dict = field(default_factory=dict)  # name -> Cluster, insertion order
    order: list = field(default_factory=list)  # ('node', id) and ('cluster', name), as they were added
    same_rank: list = field(default_factory=list)  # groups of node ids graphviz puts side by side


@dataclass
class DotGraph:
    name: str = "G"
    graph_attrs: dict = field(default_factory=dict)
    node_defaults: dict = field(default_factory=dict)
    edge_defaults: dict = field(default_factory=dict)
    root: Cluster = field(default_factory=lambda: Cluster(""))
    node_attrs: dict = field(default_factory=dict)  # id -> attrs
    edges: list = field(default_factory=list)  # (src, dst, attrs)
    depth: int | None = None  # the block depth drawn (-1: everything), when the picture has blocks
    collapsed: set = field(default_factory=set)  # clusters the interactive view shows closed at first

    def cluster(self, path: list[str], labels: dict | None = None, attrs: dict | None = None) -> Cluster:
        """The cluster at `path` (a list of cluster names, outermost first), created on demand."""
        c = self.root
        for name in path:
            if name not in c.children:
                label = (labels or {}).get(name, name)
                c.children[name] = Cluster(name, label, dict((attrs or {}).get(name, {})))
                c.order.append(("cluster", name))
            c = c.children[name]
        return c

    def add_node(self, node_id: str, cluster_path: list[str] | None = None, **attrs) -> None:
        if node_id in self.node_attrs:
            self.node_attrs[node_id].update(attrs)
            return
        self.node_attrs[node_id] = dict(attrs)
        c = self.cluster(cluster_path or [])
        c.nodes.append(node_id)
        c.order.append(("node", node_id))

    def add_edge(self, src: str, dst: str, **attrs) -> None:
        self.edges.append((src, dst, dict(attrs)))

    def find_cluster(self, name: str) -> Cluster | None:
        stack = [self.root]
        while stack:
            c = stack.pop()
            if c.name == name:
                return c
            stack.extend(c.children.values())
        return None

    def to_dot(self) -> str:
        lines = [f"digraph {quote(self.name)} {{"]
        for kind, attrs in (("graph", self.graph_attrs), ("node", self.node_defaults),
                            ("edge", self.edge_defaults)):
            if attrs:
                lines.append(f"  {kind}{format_attrs(attrs)};")
        self._write_cluster(self.root, lines, "  ")
        for src, dst, attrs in self.edges:
            lines.append(f"  {quote(src)} -> {quote(dst)}{format_attrs(attrs)};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _write_cluster(self, c: Cluster, lines: list, indent: str) -> None:
        for node_id in c.nodes:
            lines.append(f"{indent}{quote(node_id)}{format_attrs(self.node_attrs[node_id])};")
        for child in c.children.values():  # nodes first: graphviz then keeps spec order within a rank
            lines.append(f"{indent}subgraph {quote('cluster_' + child.name)} {{")
            attrs = dict(child.attrs)
            attrs.setdefault("label", child.label)
            for k, v in sorted(attrs.items()):
                lines.append(f"{indent}  {k}={quote(v)};")
            self._write_cluster(child, lines, indent + "  ")
            lines.append(f"{indent}}}")
        for group in c.same_rank:
            lines.append(f"{indent}{{rank=same; {' '.join(quote(n) + ';' for n in group)}}}")

    def count_nodes(self) -> int:
        return len(self.node_attrs)

    def side_by_side_pairs(self) -> set:
        """Pairs of node ids in one same-rank group (an edge between them adds no rank)."""
        pairs, stack = set(), [self.root]
        while stack:
            c = stack.pop()
            stack.extend(c.children.values())
            for group in c.same_rank:
                pairs.update((a, b) for a in group for b in group)
        return pairs

    def prune(self) -> None:
        """Drops the clusters that hold no node (at any depth)."""
        def keep(c: Cluster) -> bool:
            for name in list(c.children):
                if not keep(c.children[name]):
                    del c.children[name]
                    c.order.remove(("cluster", name))
            return bool(c.nodes or c.children)
        keep(self.root)

    def folded(self, folds: dict) -> "DotGraph":
        """A copy where each cluster named in `folds` (name -> (node id, attrs)), with everything inside
        it, is one node; several clusters may fold into the same node. Edges follow their ends to the
        nodes standing for them; edges inside one fold disappear and repeats (same ends, same label) merge."""
        out = DotGraph(self.name, dict(self.graph_attrs), dict(self.node_defaults), dict(self.edge_defaults),
                       depth=self.depth, collapsed=set(self.collapsed))
        stand_in: dict[str, str] = {}

        def members(c: Cluster):
            yield from c.nodes
            for child in c.children.values():
                yield from members(child)

        def copy(src: Cluster, path: list[str]) -> None:
            for kind, name in src.order:
                if kind == "node":
                    out.add_node(name, path, **self.node_attrs[name])
                    stand_in[name] = name
                elif name in folds:
                    node_id, attrs = folds[name]
                    out.add_node(node_id, path, **attrs)
                    for m in members(src.children[name]):
                        stand_in[m] = node_id
                else:
                    child = src.children[name]
                    out.cluster(path + [name], {name: child.label}, {name: child.attrs})
                    copy(child, path + [name])
            here = out.cluster(path)
            for group in src.same_rank:
                if all(stand_in.get(n) == n for n in group):
                    here.same_rank.append(list(group))

        copy(self.root, [])
        seen = set()
        for src, dst, attrs in self.edges:
            u, v = stand_in.get(src, src), stand_in.get(dst, dst)
            key = (u, v, attrs.get("label"))
            if u != v and key not in seen:
                seen.add(key)
                out.add_edge(u, v, **attrs)
        return out


def side_by_side(left: DotGraph, right: DotGraph, left_title: str, right_title: str,
                 name: str = "both") -> DotGraph:
    """One picture with `left` and `right` as two top-level clusters; node ids get 'fwd:'/'bwd:' prefixes."""
    return combine([("fwd:", left, left_title), ("bwd:", right, right_title)], name)


def combine(parts: list[tuple[str, DotGraph, str]], name: str) -> DotGraph:
    """One picture holding each (prefix, graph, title) as a top-level cluster named `<prefix>view`;
    node and cluster ids get the prefix. Graph-wide attributes come from the first part."""
    first = parts[0][1]
    both = DotGraph(name, dict(first.graph_attrs), dict(first.node_defaults), dict(first.edge_defaults))
    both.graph_attrs.pop("label", None)
    both.graph_attrs["newrank"] = "true"
    for prefix, g, title in parts:
        top = Cluster(prefix + "view", title, {"style": "rounded", "color": "gray40", "fontsize": "16"})
        both.root.children[top.name] = top
        both.root.order.append(("cluster", top.name))
        both.collapsed |= {prefix + c for c in g.collapsed}
        _copy_cluster(g.root, top, prefix, g, both)
        for src, dst, attrs in g.edges:
            edge = dict(g.edge_defaults)
            edge.update(attrs)
            both.add_edge(prefix + src, prefix + dst, **edge)
    return both


def _copy_cluster(src: Cluster, dst: Cluster, prefix: str, g: DotGraph, out: DotGraph) -> None:
    for node_id in src.nodes:
        attrs = dict(g.node_defaults)
        attrs.update(g.node_attrs[node_id])
        out.node_attrs[prefix + node_id] = attrs
        dst.nodes.append(prefix + node_id)
    for child in src.children.values():
        c = Cluster(prefix + child.name, child.label, dict(child.attrs))
        dst.children[c.name] = c
        _copy_cluster(child, c, prefix, g, out)
    dst.order = [(kind, prefix + name) for kind, name in src.order]
    dst.same_rank = [[prefix + n for n in group] for group in src.same_rank]


def dot_binary() -> str | None:
    return shutil.which("dot")


class MissingDot(RuntimeError):
    """The `dot` binary is not on PATH; the .dot text was written next to the requested output."""


def write_picture(dot_text: str, out: Path, fmt: str, timeout: float = 300.0, dpi: int | None = None) -> Path:
    """Write `dot_text` as `out` in `fmt` (svg, png, pdf or dot); returns the path written.

    For image formats the .dot file is always written too (beside `out`), so a missing or failing `dot`
    still leaves the picture's source behind. Raises MissingDot when `dot` is not installed. Both files
    are written atomically (builder.core.io_utils): a failed or killed `dot` leaves the previous picture.
    """
    out = Path(out)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    dot_path = out if fmt == "dot" else out.with_suffix(".dot")
    atomic_write_text(dot_path, dot_text)
    if fmt == "dot":
        return dot_path
    exe = dot_binary()
    if exe is None:
        raise MissingDot(f"wrote {dot_path}, but {INSTALL_HINT}")
    with atomic_output(out) as tmp:
        cmd = [exe, f"-T{fmt}", "-o", str(tmp), str(dot_path)]
        if dpi:
            cmd.insert(1, f"-Gdpi={int(dpi)}")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"dot failed on {dot_path}: {proc.stderr.strip()}")
    return out


# ---- reading back the DOT text written above -------------------------------------------------------------

_STR = r'"((?:[^"\\]|\\.)*)"'
_NODE_RE = re.compile(rf"^\s*{_STR}( \[.*\])?;$")
_EDGE_RE = re.compile(rf"^\s*{_STR} -> {_STR}( \[.*\])?;$")
_SUB_RE = re.compile(rf"^\s*subgraph {_STR} {{$")
_ATTR_RE = re.compile(rf"(\w+)={_STR}")
_GATTR_RE = re.compile(rf"^\s*(\w+)={_STR};$")


def _unquote(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), s)


def _parse_attrs(text: str | None) -> dict:
    return {k: _unquote(v) for k, v in _ATTR_RE.findall(text or "")}


@dataclass
class ParsedDot:
    nodes: dict  # id -> attrs
    edges: list  # (src, dst, attrs)
    clusters: dict  # cluster name (without cluster_) -> {"attrs": {...}, "parent": name or None}
    node_cluster: dict  # node id -> innermost cluster name or None

    def cluster_path(self, node_id: str) -> list[str]:
        """Cluster names from outermost to innermost that hold `node_id`."""
        path, c = [], self.node_cluster.get(node_id)
        while c is not None:
            path.append(c)
            c = self.clusters[c]["parent"]
        return path[::-1]


def parse_dot(text: str) -> ParsedDot:
    """Read DOT text written by `DotGraph.to_dot` (one statement per line)."""
    nodes, edges, clusters, node_cluster = {}, [], {}, {}
    stack: list[str] = []
    for line in text.splitlines()[1:]:
        if m := _SUB_RE.match(line):
            name = _unquote(m.group(1)).removeprefix("cluster_")
            clusters[name] = {"attrs": {}, "parent": stack[-1] if stack else None}
            stack.append(name)
        elif line.strip() == "}":
            if stack:
                stack.pop()
        elif m := _EDGE_RE.match(line):
            edges.append((_unquote(m.group(1)), _unquote(m.group(2)), _parse_attrs(m.group(3))))
        elif m := _NODE_RE.match(line):
            node_id = _unquote(m.group(1))
            nodes[node_id] = _parse_attrs(m.group(2))
            node_cluster[node_id] = stack[-1] if stack else None
        elif stack and (m := _GATTR_RE.match(line)):
            clusters[stack[-1]]["attrs"][m.group(1)] = _unquote(m.group(2))
    return ParsedDot(nodes, edges, clusters, node_cluster)
