"""The interactive view: one self-contained HTML file (no network access: styles, script and data inline)
showing a DotGraph (forward, backward or ONNX) with blocks that expand and collapse on click, a search
by spec path, and hover details.

The page gets the picture fully expanded plus the names of the clusters to show closed at first (those
the PNG folds at its default depth). The script lays each block out in rows by the longest path inside
it (spec order top-down; a backward picture's edges are read against the gradient for that) and draws
the edges as SVG curves between whatever is visible: a node, or the closed block holding it.
"""

from __future__ import annotations

import html
import json

from viz.dot_render import Cluster, DotGraph, HtmlLabel

_CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:0;background:#fafafa;color:#222}
header{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid #ccc;padding:6px 10px;
 display:flex;gap:12px;align-items:center;flex-wrap:wrap}
header h1{font-size:14px;margin:0;font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;
 max-width:calc(100vw - 480px)}
#search{font-size:13px;padding:3px 6px;width:260px}
#hits{font-size:12px;color:#555}
#wrap{position:relative;padding:12px 330px 40px 12px}
#edges{position:absolute;left:0;top:0;pointer-events:none;overflow:visible}
.blk{border:1px solid #888;border-radius:8px;margin:6px;padding:2px 6px 6px;background:rgba(255,255,255,.55)}
.blk.repeat{border-style:dashed}
.hd{font-size:12px;cursor:pointer;user-select:none;white-space:pre-line;padding:2px 0;color:#333}
.hd:hover{color:#000;text-decoration:underline}
.blk.closed{background:#fff7cc;box-shadow:3px 3px 0 #bbb;display:inline-block}
.blk.closed>.bd{display:none}
.row{display:flex;flex-direction:row;justify-content:center;align-items:flex-start;gap:18px;margin:16px 0}
.nd{border:1px solid #555;border-radius:6px;padding:3px 8px;font-size:11px;white-space:pre-line;
 text-align:center;background:#f5f5f5;min-width:60px;cursor:default}
.nd.oval{border-radius:999px}
.hit{outline:3px solid #ff7f00;outline-offset:2px}
#panel{position:fixed;right:8px;top:52px;width:300px;max-height:80vh;overflow:auto;background:#fff;
 border:1px solid #bbb;border-radius:6px;padding:8px;font-size:12px;white-space:pre-wrap}
"""

_JS = r"""
"use strict";
const G = JSON.parse(document.getElementById("graph-data").textContent);
const closed = new Set(G.collapsed);
const parentOf = {};   // node or cluster id -> id of the cluster holding it ("" at the top)
const elOf = {};       // id -> DOM element
function index(c) {
  for (const it of c.items) {
    if (it.node !== undefined) parentOf[it.node] = c.id;
    else { parentOf[it.cluster.id] = c.id; index(it.cluster); }
  }
}
index(G.tree);
function ancestors(id) { const out = []; let p = parentOf[id]; while (p) { out.push(p); p = parentOf[p]; } return out; }
function visible(id) {  // the visible stand-in of a node: itself or its outermost closed block
  let rep = id; for (const a of ancestors(id)) if (closed.has(a)) rep = a; return rep;
}
function reversed(id) {  // a backward picture (or part): laid out against its edges, the spec's order
  return G.reverse.includes(id) || ancestors(id).some(a => G.reverse.includes(a));
}
function itemId(it) { return it.node !== undefined ? it.node : it.cluster.id; }
function rows(c) {  // items of a cluster in rows: longest path inside the cluster, in item order
  const ids = c.items.map(itemId), pos = new Map(ids.map((x, i) => [x, i]));
  const local = id => { let x = id; while (x !== undefined && !pos.has(x)) x = parentOf[x] || undefined;
                        return x; };
  const preds = ids.map(() => new Set());
  for (const [s0, d0] of G.edges) {
    let s = local(s0), d = local(d0);
    if (s === undefined || d === undefined || s === d) continue;
    if (reversed(c.id)) [s, d] = [d, s];
    preds[pos.get(d)].add(pos.get(s));
  }
  const level = new Array(ids.length).fill(-1);
  const visit = (i, seen) => {
    if (level[i] >= 0) return level[i];
    if (seen.has(i)) return 0;
    seen.add(i); let l = 0;
    for (const p of preds[i]) l = Math.max(l, visit(p, seen) + 1);
    seen.delete(i); level[i] = l; return l;
  };
  ids.forEach((_, i) => visit(i, new Set()));
  const out = [];
  c.items.forEach((it, i) => { (out[level[i]] = out[level[i]] || []).push(it); });
  return out.filter(Boolean);
}
function nodeEl(id) {
  const n = G.nodes[id], d = document.createElement("div");
  d.className = "nd" + (n.shape === "oval" || n.shape === "ellipse" ? " oval" : "");
  d.textContent = n.label; d.dataset.id = id; d.title = n.details;
  if (n.fill) d.style.background = n.fill;
  if (n.font) d.style.color = n.font;
  if (n.border) d.style.borderColor = n.border;
  if (n.dashed) d.style.borderStyle = "dashed";
  d.addEventListener("mouseenter", () => show(id, n.details));
  elOf[id] = d; return d;
}
function blockEl(c) {
  const d = document.createElement("div");
  d.className = "blk" + (c.dashed ? " repeat" : "") + (closed.has(c.id) ? " closed" : "");
  d.dataset.id = c.id;
  if (c.border) d.style.borderColor = c.border;
  if (c.fill) d.style.background = c.fill;
  const hd = document.createElement("div");
  hd.className = "hd"; hd.textContent = (closed.has(c.id) ? "\u25b8 " : "\u25be ") + c.label;
  hd.title = "click to " + (closed.has(c.id) ? "expand" : "collapse");
  hd.addEventListener("click", ev => { ev.stopPropagation(); toggle(c.id); });
  hd.addEventListener("mouseenter", () => show(c.id, c.details));
  d.appendChild(hd);
  const bd = document.createElement("div"); bd.className = "bd";
  if (!closed.has(c.id)) for (const r of rows(c)) bd.appendChild(rowEl(r));
  d.appendChild(bd); elOf[c.id] = d; return d;
}
function rowEl(items) {
  const r = document.createElement("div"); r.className = "row";
  for (const it of items) r.appendChild(it.node !== undefined ? nodeEl(it.node) : blockEl(it.cluster));
  return r;
}
function show(id, details) { document.getElementById("panel").textContent = id + "\n\n" + details; }
function toggle(id) { if (closed.has(id)) closed.delete(id); else closed.add(id); render(); }
function render() {
  const root = document.getElementById("graph");
  for (const k in elOf) delete elOf[k];
  root.replaceChildren(...rows(G.tree).map(rowEl));
  drawEdges();
  mark();
}
function drawEdges() {
  const svg = document.getElementById("edges"), wrap = document.getElementById("wrap");
  const box = wrap.getBoundingClientRect();
  svg.setAttribute("width", wrap.scrollWidth); svg.setAttribute("height", wrap.scrollHeight);
  const NS = svg.namespaceURI, parts = [], seen = new Set();  // the inline <svg>'s own namespace
  for (const [s0, d0] of G.edges) {
    const s = visible(s0), d = visible(d0), key = s + "\u0000" + d;
    if (s === d || seen.has(key) || !elOf[s] || !elOf[d]) continue;
    seen.add(key);
    const a = elOf[s].getBoundingClientRect(), b = elOf[d].getBoundingClientRect();
    if (!a.width || !b.width) continue;
    const down = b.top >= a.bottom - 1;
    const x1 = a.left + a.width / 2 - box.left, y1 = (down ? a.bottom : a.top) - box.top;
    const x2 = b.left + b.width / 2 - box.left, y2 = (down ? b.top : b.bottom) - box.top;
    const bend = Math.max(20, Math.abs(y2 - y1) / 3) * (down ? 1 : -1);
    // an edge that jumps over rows (a skip connection) bows out to the right instead of crossing them
    const side = Math.abs(y2 - y1) > 90 ? Math.min(160, 30 + Math.abs(y2 - y1) / 8) : 0;
    const p = document.createElementNS(NS, "path");
    p.setAttribute("d", `M${x1},${y1} C${x1 + side},${y1 + bend} ${x2 + side},${y2 - bend} ${x2},${y2}`);
    p.setAttribute("fill", "none"); p.setAttribute("stroke", G.edgeColor);
    p.setAttribute("stroke-width", "1.2"); p.setAttribute("marker-end", "url(#arrow)");
    parts.push(p);
  }
  const defs = svg.querySelector("defs");
  svg.replaceChildren(defs, ...parts);
}
let query = "";
function mark() {
  const hits = [];
  for (const [id, el] of Object.entries(elOf)) {
    const on = query !== "" && id.toLowerCase().includes(query);
    el.classList.toggle("hit", on);
    if (on) hits.push(el);
  }
  document.getElementById("hits").textContent = query ? `${hits.length} shown match "${query}"` : "";
  return hits;
}
document.getElementById("search").addEventListener("input", ev => {
  query = ev.target.value.trim().toLowerCase();
  if (query) {  // open every block holding a match
    const ids = Object.keys(G.nodes).concat(Object.keys(parentOf));
    for (const id of ids) if (id.toLowerCase().includes(query)) for (const a of ancestors(id)) closed.delete(a);
  }
  render();
  const hits = mark();
  if (hits.length) hits[0].scrollIntoView({block: "center"});
});
window.addEventListener("resize", drawEdges);
render();
"""


def _plain(label) -> str:
    """The text of a label (an HTML-like label, the legend, reads as its cell texts)."""
    if isinstance(label, HtmlLabel):
        import re
        cells = re.findall(r">([^<>]+)<", label)
        return html.unescape(" ".join(c.strip() for c in cells if c.strip()))
    return str(label)


def _node(attrs: dict) -> dict:
    style = attrs.get("style", "")
    fill = attrs.get("fillcolor") if "filled" in style else None
    label = _plain(attrs.get("label", ""))
    return {"label": label, "details": str(attrs.get("tooltip") or label), "shape": attrs.get("shape", "box"),
            "fill": fill, "font": attrs.get("fontcolor"), "border": attrs.get("color"),
            "dashed": "dashed" in style}


def _tree(dot: DotGraph, c: Cluster) -> dict:
    items = []
    for kind, name in c.order:
        if kind == "node" and dot.node_attrs[name].get("class") == "caption":
            continue  # a block's title drawn as a node for graphviz: the page shows it as the title
        items.append({"node": name} if kind == "node" else {"cluster": _tree(dot, c.children[name])})
    style = c.attrs.get("style", "")
    fill = c.attrs.get("fillcolor") if "filled" in style else None
    label = c.attrs.get("label") or c.label
    return {"id": c.name, "label": label, "details": label, "items": items, "dashed": "dashed" in style,
            "border": c.attrs.get("color"), "fill": fill}


def page(dot: DotGraph, collapsed=(), reverse=()) -> str:
    """The HTML text of the interactive view of `dot`. collapsed: cluster names shown closed at first;
    reverse: clusters ('' for the whole picture) laid out against their edges (a backward picture,
    whose edges point from the loss)."""
    title = str(dot.graph_attrs.get("label") or dot.name)
    data = {"tree": _tree(dot, dot.root), "nodes": {n: _node(a) for n, a in dot.node_attrs.items()},
            "edges": [[s, d] for s, d, a in dot.edges if a.get("style") != "invis"],
            "collapsed": sorted(set(collapsed) & _cluster_names(dot.root)), "reverse": sorted(reverse),
            "edgeColor": dot.edge_defaults.get("color", "#555")}
    blob = json.dumps(data, separators=(",", ":"), sort_keys=True).replace("</", "<\\/")
    head = html.escape(title.split("\n")[0])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{head}</title>\n'
            f"<style>{_CSS}</style></head>\n<body>\n<header><h1 title=\"{html.escape(title)}\">{head}</h1>"
            f'<input id="search" type="search" placeholder="search spec path (e.g. layer1.0.conv1)">'
            f'<span id="hits"></span></header>\n<div id="wrap"><svg id="edges"><defs><marker id="arrow" '
            f'viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{data["edgeColor"]}"/></marker></defs></svg>'
            f'<div id="graph"></div></div>\n<div id="panel">{html.escape(title)}\n\nhover a node or a block for '
            f'details; click a block title to collapse or expand it</div>\n'
            f'<script type="application/json" id="graph-data">{blob}</script>\n'
            f"<script>{_JS}</script>\n</body></html>\n")


def _cluster_names(c: Cluster) -> set:
    names = set()
    for child in c.children.values():
        names.add(child.name)
        names |= _cluster_names(child)
    return names


def clusters_deeper_than(dot: DotGraph, depth: int) -> set:
    """Clusters nested more than `depth` levels deep (a top-level cluster is level 1)."""
    out, stack = set(), [(c, 1) for c in dot.root.children.values()]
    while stack:
        c, level = stack.pop()
        if level > depth:
            out.add(c.name)
        stack.extend((k, level + 1) for k in c.children.values())
    return out
