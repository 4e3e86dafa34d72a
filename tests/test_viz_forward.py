"""Forward picture from hand-made contract graphs (docs/ARCHITECTURE.md), parsed back from DOT and SVG."""

import re
from dataclasses import replace

import networkx as nx
import pytest

from builder.core.types import NodeRecord, record

from viz.dot_render import parse_dot, write_picture, dot_binary
from viz.forward import auto_depth, forward_dot, skip_edges


def node_record(path, op, sources, shape, params, block="", args=None, **fields):
    """A NodeRecord as the graph stage writes it (docs/ARCHITECTURE.md), one output port `out`."""
    base = dict(path=path, op=op, args=args or {}, sources=tuple(sources), slots=None, in_shapes=(),
                out_shapes={"out": shape}, ports=("out",), dtype="float32", param_count=params,
                trainable_param_count=params, macs=0, param_shapes={}, block=block, block_type=None,
                file="x.yaml", line=None, col=None, share=None, tie=None, init=None, trainable=True)
    return NodeRecord(**{**base, **fields})


def contract_graph(name, inputs, nodes, outputs, blocks=None):
    """nodes: list of (id, op, [(src, port)], out_shape, params, block, args, extra record fields)."""
    g = nx.MultiDiGraph(name=name, network="model", inputs=[n for n, _ in inputs],
                        outputs=outputs, blocks=blocks or {})
    for n, shape in inputs:
        g.add_node(n, record=node_record(n, "input", (), shape, 0))
    for n, op, ins, shape, params, block, args, *extra in nodes:
        rec = node_record(n, op, ins, shape, params, block, args,
                          in_shapes=tuple(record(g, s).out_shape for s, _ in ins),
                          block_type=(blocks or {}).get(block, {}).get("block"), line=len(g) + 1, col=3,
                          **(extra[0] if extra else {}))
        g.add_node(n, record=rec)
        for slot, (s, port) in enumerate(ins):
            g.add_edge(s, n, port=port, slot=slot, shape=record(g, s).out_shape)
    return g


def tiny_resnet(repeat=2, c=16):
    blocks = {"stage1": {"block": "basic", "repeat": repeat, "index": None, "parent": ""}}
    nodes = [("stem", "Conv2d", [("x", "out")], ("B", c, 32, 32), 3 * c * 9 + c, "",
              {"in_channels": 3, "out_channels": c, "kernel_size": 3, "padding": 1})]
    prev = "stem"
    for i in range(repeat):
        b = f"stage1.{i}"
        blocks[b] = {"block": "basic", "repeat": None, "index": i, "parent": "stage1"}
        s = ("B", c, 32, 32)
        conv = {"in_channels": c, "out_channels": c, "kernel_size": 3, "padding": 1, "bias": False}
        nodes += [
            (f"{b}.conv1", "Conv2d", [(prev, "out")], s, c * c * 9, b, conv),
            (f"{b}.bn1", "BatchNorm2d", [(f"{b}.conv1", "out")], s, 2 * c, b, {"num_features": c}),
            (f"{b}.act1", "ReLU", [(f"{b}.bn1", "out")], s, 0, b, {}),
            (f"{b}.conv2", "Conv2d", [(f"{b}.act1", "out")], s, c * c * 9, b, conv),
            (f"{b}.bn2", "BatchNorm2d", [(f"{b}.conv2", "out")], s, 2 * c, b, {"num_features": c}),
            (f"{b}.sum", "add", [(f"{b}.bn2", "out"), (prev, "out")], s, 0, b, {}),
            (f"{b}.out", "ReLU", [(f"{b}.sum", "out")], s, 0, b, {}),
        ]
        prev = f"{b}.out"
    nodes += [
        ("pool", "AdaptiveAvgPool2d", [(prev, "out")], ("B", c, 1, 1), 0, "", {"output_size": 1}),
        ("flat", "Flatten", [("pool", "out")], ("B", c), 0, "", {}),
        ("head", "Linear", [("flat", "out")], ("B", 10), c * 10 + 10, "",
         {"in_features": c, "out_features": 10}),
    ]
    return contract_graph("tiny-resnet", [("x", ("B", 3, 32, 32))], nodes, [("head", "head", "out")],
                          blocks)


def tied_lm():
    nodes = [
        ("wte", "Embedding", [("idx", "out")], ("B", "T", 32), 100 * 32, "",
         {"num_embeddings": 100, "embedding_dim": 32}),
        ("enc", "Linear", [("wte", "out")], ("B", "T", 32), 32 * 32 + 32, "",
         {"in_features": 32, "out_features": 32}),
        ("enc2", "Linear", [("enc", "out")], ("B", "T", 32), 0, "",
         {"in_features": 32, "out_features": 32}, {"share": "enc"}),
        ("head", "Linear", [("enc2", "out")], ("B", "T", 100), 0, "",
         {"in_features": 32, "out_features": 100, "bias": False}, {"tie": {"weight": "wte.weight"}}),
    ]
    g = contract_graph("tied-lm", [("idx", ("B", "T"))], nodes, [("logits", "head", "out")])
    g.nodes["idx"]["record"] = replace(record(g, "idx"), dtype="int64")
    return g


def test_nodes_labels_edges_and_clusters():
    g = tiny_resnet()
    p = parse_dot(forward_dot(g, depth=-1).to_dot())
    spec_nodes = set(g.nodes)
    assert spec_nodes <= set(p.nodes)
    assert set(p.nodes) - spec_nodes == {"out:head"}
    conv = p.nodes["stage1.1.conv1"]["label"].split("\n")
    assert conv[0] == "stage1.1.conv1" and conv[1] == "Conv2d"
    assert "16 -> 16" in conv[2] and "k=3" in conv[2] and "p=1" in conv[2]
    assert conv[-1] == "2,304 params"
    assert p.cluster_path("stage1.1.conv1") == ["stage1", "stage1.1"]
    assert p.cluster_path("stem") == []
    assert "basic x 2" in p.clusters["stage1"]["attrs"]["label"]
    edges = {(u, v): a for u, v, a in p.edges}
    assert edges[("x", "stem")]["label"] == "B x 3 x 32 x 32"
    assert edges[("flat", "head")]["label"] == "B x 16"
    assert ("head", "out:head") in edges and ("stem", "x") not in edges
    assert p.nodes["x"]["shape"] == "oval" and p.nodes["out:head"]["fillcolor"] != p.nodes["x"]["fillcolor"]


def test_residual_edges_are_marked():
    p = parse_dot(forward_dot(tiny_resnet(), depth=-1).to_dot())
    skips = {(u, v) for u, v, a in p.edges if a.get("style") == "dashed"}
    assert skips == {("stem", "stage1.0.sum"), ("stage1.0.out", "stage1.1.sum")}
    assert all(a["label"].startswith("skip: ") for u, v, a in p.edges if (u, v) in skips)


def test_skip_edges_on_plain_lists():
    assert skip_edges(list("abcd"), [("a", "b"), ("b", "c"), ("a", "c"), ("c", "d")]) == {("a", "c")}
    assert skip_edges(list("abc"), [("a", "b"), ("a", "c")]) == set()


def test_depth_collapses_blocks():
    g = tiny_resnet(repeat=3)
    p0 = parse_dot(forward_dot(g, depth=0).to_dot())
    assert "stage1" in p0.nodes and "stage1.0.conv1" not in p0.nodes
    lab = p0.nodes["stage1"]["label"].split("\n")
    assert lab[:2] == ["stage1", "basic x 3"] and "21 nodes" in lab[2]
    assert p0.nodes["stage1"]["shape"] == "box3d"
    assert {(u, v) for u, v, _ in p0.edges} >= {("stem", "stage1"), ("stage1", "pool")}
    p1 = parse_dot(forward_dot(g, depth=1).to_dot())  # the first copy a box, the later ones one summary
    assert {"stage1.0", "stage1.1..2"} <= set(p1.nodes) and "stage1.1" not in p1.nodes
    assert p1.cluster_path("stage1.1..2") == ["stage1"]
    assert p1.nodes["stage1.1..2"]["label"].split("\n")[:2] == ["stage1.1 .. stage1.2", "basic x 2 more (x 3 in all)"]
    assert ("stage1.0", "stage1.1..2") in {(u, v) for u, v, _ in p1.edges}
    p2 = parse_dot(forward_dot(g, depth=2).to_dot())  # the first copy drawn in full
    assert "stage1.0.conv1" in p2.nodes and "stage1.1.conv1" not in p2.nodes
    assert ("stage1.0.out", "stage1.1..2") in {(u, v) for u, v, _ in p2.edges}
    assert "stage1.2.conv1" in parse_dot(forward_dot(g, depth=-1).to_dot()).nodes  # -1: nothing folded
    assert auto_depth(g, max_nodes=10) == 1 and auto_depth(g, max_nodes=20) == 2  # 26 nodes whole, 13 at depth 2
    assert auto_depth(g, max_nodes=100) == -1  # the whole network fits: nothing is folded
    assert auto_depth(g, max_nodes=2) == 0


def test_shared_and_tied_weights_are_marked():
    p = parse_dot(forward_dot(tied_lm()).to_dot())
    links = {(u, v): a for u, v, a in p.edges if a.get("style") == "dotted"}
    assert links[("enc2", "enc")]["label"] == "shares weights"
    assert links[("head", "wte")]["label"] == "tied: weight = wte.weight"
    assert "shares weights of enc" in p.nodes["enc2"]["label"]
    assert "int64" in p.nodes["idx"]["label"]
    assert p.edges[0][2]["label"] == "B x T" and "B x T x 100" in p.nodes["out:logits"]["label"]


def test_ports_and_named_slots_on_edges():
    nodes = [
        ("lstm", "LSTM", [("x", "out")], ("B", "T", 8), 100, "", {"hidden_size": 8}),
        ("attn", "attention", [("lstm", "out"), ("lstm", "out"), ("lstm", "h")], ("B", "T", 8), 0, "",
         {"heads": 2, "slots": ("q", "k", "v")}, {"slots": ("q", "k", "v")}),
    ]
    g = contract_graph("ports", [("x", ("B", "T", 4))], nodes, [("attn", "attn", "out")])
    g.nodes["lstm"]["record"] = replace(record(g, "lstm"), ports=("out", "h"),
                                        out_shapes={"out": ("B", "T", 8), "h": (1, "B", 8)})
    for u, v, k, d in g.edges(keys=True, data=True):
        if d["port"] == "h":
            d["shape"] = (1, "B", 8)
    p = parse_dot(forward_dot(g).to_dot())
    labels = sorted(a["label"] for u, v, a in p.edges if v == "attn")
    assert labels == ["B x T x 8 -> k", "B x T x 8 -> q", "h: 1 x B x 8 -> v"]
    assert "slots" not in p.nodes["attn"]["label"] and "heads=2" in p.nodes["attn"]["label"]


def test_dot_is_byte_identical():
    assert forward_dot(tiny_resnet()).to_dot() == forward_dot(tiny_resnet()).to_dot()


def test_svg_titles_and_clusters(tmp_path):
    if dot_binary() is None:
        pytest.skip("graphviz dot not installed")
    out = write_picture(forward_dot(tiny_resnet(), depth=-1).to_dot(), tmp_path / "f.svg", "svg")
    svg = out.read_text()
    titles = set(re.findall(r"<title>(.*?)</title>", svg))
    assert {"stem", "stage1.0.conv1", "cluster_stage1", "cluster_stage1.1", "x&#45;&gt;stem"} <= titles
    assert (tmp_path / "f.dot").exists()
