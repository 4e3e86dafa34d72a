"""The backward picture folds like the forward one: blocks deeper than the depth as one box, the later
copies of a repeated block as one `x N` box carrying each copy's gradient norm; spec order top-down."""

import math

import pytest

import builder
from tests.test_viz_cli import TINY_RESNET
from viz.backward import backward_dot
from viz.dot_render import parse_dot
from viz.step import one_step


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    path = tmp_path_factory.mktemp("fold") / "tiny_resnet.yaml"
    path.write_text(TINY_RESNET.replace("blocks: 2", "blocks: 3"))
    spec = builder.load(path)
    return spec.network().graph, one_step(spec).trace


def copy_norm(trace, copy):
    return math.sqrt(sum(lf.grad.norm ** 2 for lf in trace.leaves.values()
                         if lf.kind == "param" and lf.path.startswith(copy + ".")))


def test_later_copies_fold_into_one_node_with_each_copy_norm(resnet):
    g, trace = resnet
    p = parse_dot(backward_dot(trace, g, depth=2, grads=True).to_dot())
    assert "stage1.1..2" in p.nodes and p.cluster_path("stage1.1..2") == ["stage1"]
    assert "stage1.0.conv1.weight" in p.nodes
    assert not any(n.startswith(("stage1.1.", "stage1.2.")) for n in p.nodes if n != "stage1.1..2")
    label = p.nodes["stage1.1..2"]["label"].split("\n")
    assert label[:2] == ["stage1.1 .. stage1.2", "basic x 2 more (like stage1.0)"]
    norms = dict(item.split(": ") for line in label[4:] for item in line.split("  ") if ": " in item)
    for i in range(3):  # every copy's gradient norm, the first one's too
        assert float(norms[str(i)]) == pytest.approx(copy_norm(trace, f"stage1.{i}"), rel=1e-2)
    assert p.nodes["stage1.1..2"]["fillcolor"].startswith("#")  # coloured by its gradient norm
    # gradients flow from the later copies into the first one, and from the head into the later copies
    edges = {(u, v) for u, v, _ in p.edges}
    assert any(u == "stage1.1..2" and v.startswith("stage1.0.") for u, v in edges)
    assert any(v == "stage1.1..2" and u.startswith("pool") for u, v in edges)


def test_depth_zero_and_everything(resnet):
    g, trace = resnet
    p0 = parse_dot(backward_dot(trace, g, depth=0).to_dot())
    assert "stage1" in p0.nodes and not any(n.startswith("stage1.") for n in p0.nodes)
    assert p0.nodes["stage1"]["label"].split("\n")[1] == "basic x 3"
    assert "depth 0 of 2" in backward_dot(trace, g, depth=0).graph_attrs["label"]
    full = parse_dot(backward_dot(trace, g, depth=-1).to_dot())
    assert "stage1.2.conv2.weight" in full.nodes and len(full.nodes) > 2 * len(p0.nodes)


def test_default_depth_and_spec_order_layout(resnet):
    g, trace = resnet
    dot = backward_dot(trace, g)
    assert dot.depth == -1  # small enough to draw whole: no copy is hidden behind a summary
    assert dot.graph_attrs["rankdir"] == "BT"  # inputs at the top, the loss at the bottom
    text = dot.to_dot()
    assert ('{rank=same; "stem:caption"; "stem:ConvolutionBackward0"; "stem.weight"; "stem.bias";}'
            in text)  # title and parameters beside their operation
    order = [name for kind, name in dot.root.order if kind == "cluster"]
    assert order.index("stem") < order.index("stage1") < order.index("head")  # the spec's order
