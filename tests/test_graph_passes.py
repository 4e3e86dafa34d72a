"""The graph stage's passes on their own: inference on a graph made by hand (no YAML), like torch.fx's
ShapeProp on any GraphModule, and the share/tie pass after it."""
from __future__ import annotations

import networkx as nx

import builder
from builder.graph.infer import ParamShapeCache, infer_shapes
from builder.graph.sharing import check_sharing
from builder.core.types import DRAFT_KEY, NodeDraft, record


def hand_made(*drafts: NodeDraft) -> nx.MultiDiGraph:
    """Nodes in the given order, edges from each draft's sources (port and slot, as the wiring pass makes)."""
    g = nx.MultiDiGraph()
    for d in drafts:
        g.add_node(d.path, **{DRAFT_KEY: d})
        for slot, (src, port) in enumerate(d.sources):
            g.add_edge(src, d.path, port=port, slot=slot)
    return g


def test_inference_runs_on_a_hand_made_graph():
    g = hand_made(
        NodeDraft("x", "input", shape=("B", 3, 16, 16), dtype="float32"),
        NodeDraft("conv", "Conv2d", {"out_channels": 8, "kernel_size": 3}, (("x", "out"),)),
        NodeDraft("act", "ReLU", {}, (("conv", "out"),)),
        NodeDraft("pool", "AdaptiveAvgPool2d", {"output_size": 1}, (("act", "out"),)),
        NodeDraft("flat", "Flatten", {}, (("pool", "out"),)),
        NodeDraft("head", "Linear", {"out_features": 10}, (("flat", "out"),), trainable=False),
    )
    diagnostics = []
    assert infer_shapes(g, diagnostics) and diagnostics == []
    conv, head = record(g, "conv"), record(g, "head")
    assert conv.args["in_channels"] == 3 and conv.out_shape == ("B", 8, 14, 14)  # inferred size, shape rule
    assert conv.param_shapes == {"weight": (8, 3, 3, 3), "bias": (8,)} and conv.param_count == 8 * 27 + 8
    assert conv.macs == 8 * 27 * 14 * 14
    assert head.in_shapes == (("B", 8),) and head.out_shape == ("B", 10) and head.args["in_features"] == 8
    assert head.param_count == 8 * 10 + 10 and head.trainable_param_count == 0
    assert record(g, "x").out_shapes == {"out": ("B", 3, 16, 16)} and record(g, "x").param_count == 0
    assert g.edges["flat", "head", 0]["shape"] == ("B", 8)


def test_inference_reports_each_bad_node_and_skips_what_follows():
    g = hand_made(
        NodeDraft("x", "input", shape=("B", 4), dtype="float32"),
        NodeDraft("fc", "Linear", {"out_feature": 5}, (("x", "out"),), file="h.yaml", loc=(3, 5),
                  arg_locs={"out_feature": (3, 20)}),
        NodeDraft("act", "ReLU", {}, (("fc", "out"),), file="h.yaml", loc=(4, 5)),
        NodeDraft("ids", "Embedding", {"num_embeddings": 10, "embedding_dim": 2}, (("x", "out"),),
                  file="h.yaml", loc=(5, 5)),
    )
    diagnostics = []
    assert not infer_shapes(g, diagnostics)
    assert [str(d) for d in diagnostics] == [
        "h.yaml:3:20: error: fc: Linear has no argument 'out_feature' (did you mean 'out_features'?)",
        "h.yaml:5:5: error: ids: Embedding expects integer indices, got float32 from 'x' "
        "(declare the input with dtype: int64)",
    ]
    assert "record" not in g.nodes["act"]  # a follow-on of fc's error: skipped quietly


def test_sharing_pass_takes_shared_and_tied_parameters_out_of_the_counts():
    g = hand_made(
        NodeDraft("x", "input", shape=("B", 6), dtype="float32"),
        NodeDraft("a", "Linear", {"out_features": 6}, (("x", "out"),)),
        NodeDraft("b", "Linear", {"out_features": 6}, (("a", "out"),), share="a"),
        NodeDraft("c", "Linear", {"out_features": 6}, (("b", "out"),), tie={"weight": "b.weight"}),
    )
    diagnostics = []
    assert infer_shapes(g, diagnostics)
    check_sharing(g, diagnostics)
    assert diagnostics == []
    assert [record(g, n).param_count for n in "abc"] == [42, 0, 6]
    assert record(g, "c").tie == {"weight": "a.weight"}  # through b's shared module to the owner


def test_the_parameter_shape_cache_belongs_to_one_build():
    one, other = ParamShapeCache(), ParamShapeCache()
    op = builder.ops.get("Linear")
    one.get(op, {"in_features": 2, "out_features": 3})
    assert len(one.entries) == 1 and other.entries == {}
    assert not any(isinstance(v, dict) for v in vars(ParamShapeCache).values())
