"""The picture of an exported ONNX model, with its nodes grouped by spec path.

The exporter (export/naming.py) names nodes `/stage1/stage1.0/stage1.0.conv1/Conv`: one level per
enclosing block, then the spec path, then the op, and records `builder.spec_path` in the node's metadata.
Those levels become nested clusters named `cluster_<path>`, the same clusters as the forward and backward
pictures. Initializers (weights) are not drawn as nodes: each op lists the shapes of the weights it reads.
Constant nodes are folded away. Edges carry the inferred tensor shapes (symbolic dims kept).
"""

from __future__ import annotations

from pathlib import Path

from viz.dot_render import DotGraph
from viz.labels import format_count, format_shape

PATH_KEY = "builder.spec_path"
COLORS = {"input": "#d9f2d9", "output": "#ffe0b3", "op": "#f5f5f5", "weights": "#dde8f7",
          "collapsed": "#fff7cc"}


def _dims(type_proto) -> tuple | None:
    t = type_proto.tensor_type
    if not t.HasField("shape"):
        return None
    out = []
    for d in t.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return tuple(out)


def node_levels(node) -> list[str]:
    """Cluster levels of an ONNX node: from its '/'-separated name, else its spec-path metadata."""
    name = node.name or ""
    if name.startswith("/") and name.count("/") >= 2:
        return [p for p in name.split("/")[1:-1] if p]
    meta = {p.key: p.value for p in node.metadata_props}
    path = meta.get(PATH_KEY)
    if path:
        parts = path.split(".")
        return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return []


def onnx_dot(model_or_path, rankdir: str = "TB", title: str | None = None, depth: int | None = None) -> DotGraph:
    """The picture of an ONNX model. depth: cluster levels shown (scopes deeper collapse to one box);
    None picks the deepest whose picture fits (viz.fold.pick_depth, as the forward and backward views),
    -1 shows everything."""
    import onnx

    if isinstance(model_or_path, (str, Path)):
        model = onnx.load(str(model_or_path), load_external_data=False)
        name = Path(model_or_path).stem
    else:
        model, name = model_or_path, model_or_path.graph.name or "model"
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is a nicety for the labels; the picture does not need it
        pass
    if depth is None:
        from viz.fold import pick_depth

        deepest = max((len(node_levels(n)) for n in model.graph.node if n.op_type != "Constant"), default=0)
        return pick_depth(deepest, lambda d: _onnx_dot(model, name, rankdir, title, d))[1]
    return _onnx_dot(model, name, rankdir, title, depth)


def _onnx_dot(model, name: str, rankdir: str, title: str | None, depth: int) -> DotGraph:
    import onnx

    g = model.graph
    if not g.node and not g.input:
        from builder.core.errors import UserError
        raise UserError(f"{name}: the ONNX model has an empty graph (an empty or truncated file?)")
    shapes = {vi.name: _dims(vi.type) for vi in list(g.input) + list(g.value_info) + list(g.output)}
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                   onnx.TensorProto.BFLOAT16}
    inits = {t.name: tuple(t.dims) for t in g.initializer if t.data_type in float_types}
    small = {t.name for t in g.initializer if t.data_type not in float_types}  # axes, shapes
    constants = {o for n in g.node if n.op_type == "Constant" for o in n.output}
    meta = {p.key: p.value for p in model.metadata_props}

    label = title or (f"{meta.get('builder.spec', name)}: exported ONNX graph "
                      f"(opset {max((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), default='?')},"
                      f" {sum(1 for n in g.node if n.op_type != 'Constant')} nodes, grouped by spec path)")
    dot = DotGraph(f"{name}-onnx", {"rankdir": rankdir, "label": label, "labelloc": "t",
                                     "fontname": "Helvetica", "nodesep": "0.25", "ranksep": "0.35"},
                   {"fontname": "Helvetica", "fontsize": "10"}, {"fontname": "Helvetica", "fontsize": "9"})
    producer: dict[str, str] = {}
    n_rep: dict[int, str] = {}
    for inp in g.input:
        if inp.name in inits or inp.name in small:
            continue
        dot.add_node(f"in:{inp.name}", [], label=f"{inp.name}\ninput {format_shape(shapes.get(inp.name))}",
                     shape="oval", style="filled", fillcolor=COLORS["input"])
        producer[inp.name] = f"in:{inp.name}"

    nodes = [(i, n, node_levels(n)) for i, n in enumerate(g.node) if n.op_type != "Constant"]
    deepest = max((len(lv) for _, _, lv in nodes), default=0)
    if depth < 0 or depth > deepest:
        depth = deepest
    dot.graph_attrs["label"] += f"; depth {depth} of {deepest}"
    dot.depth = depth

    collapsed: dict[str, list] = {}
    for i, n, levels in nodes:
        rep = _rep(i, n, levels, depth)
        weights = [inits[x] for x in n.input if x in inits]
        if len(levels) > depth:  # inside a scope drawn as one box
            collapsed.setdefault(rep, [levels[:depth], 0, 0])
            collapsed[rep][1] += 1
            collapsed[rep][2] += sum(_numel(w) for w in weights)
        else:
            node_id = rep
            while node_id in dot.node_attrs:
                node_id += "'"
            rep = node_id
            lines = [n.op_type, levels[-1] if levels else (n.name or "")]
            if weights:
                lines.append(", ".join(format_shape(w) for w in weights[:3]) + (" ..." if len(weights) > 3 else ""))
                lines.append(f"{format_count(sum(_numel(w) for w in weights))} weights")
            dot.cluster(levels)
            dot.add_node(node_id, levels, label="\n".join(lines), shape="box", style="rounded,filled",
                         fillcolor=COLORS["weights"] if weights else COLORS["op"])
        for o in n.output:
            producer[o] = rep
        n_rep[i] = rep
    for rep, (clusters, count, weights) in collapsed.items():
        dot.cluster(clusters)
        dot.add_node(rep, clusters, label=f"{rep.removeprefix('scope:')}\n{count} ONNX nodes, "
                                          f"{format_count(weights)} weights",
                     shape="box3d", style="filled", fillcolor=COLORS["collapsed"])
    seen = set()
    for i, n, _ in nodes:
        for x in n.input:
            if x in producer and x not in constants:
                key = (producer[x], n_rep[i], format_shape(shapes.get(x)))
                if key[0] != key[1] and key not in seen:
                    seen.add(key)
                    dot.add_edge(key[0], key[1], label=key[2])
    for out in g.output:
        dot.add_node(f"out:{out.name}", [], label=f"output {out.name}\n{format_shape(shapes.get(out.name))}",
                     shape="box", style="filled,bold", fillcolor=COLORS["output"])
        if out.name in producer:
            dot.add_edge(producer[out.name], f"out:{out.name}", label=format_shape(shapes.get(out.name)))
    return dot


def _rep(i: int, n, levels: list[str], depth: int) -> str:
    """The id drawn for ONNX node n at `depth`: its own name, or 'scope:<the level collapsed>'."""
    if len(levels) > depth:
        return f"scope:{levels[depth]}"
    return n.name or f"{n.op_type}_{i}"


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
