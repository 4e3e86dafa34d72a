"""Backward picture: hand-written modules named as the contract names them, and real specs."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from viz.autograd_walk import record_backward
from viz.dot_render import parse_dot
from viz.grad_heat import FLAG_STYLE, PALETTE

VANISHING = FLAG_STYLE["vanishing"]["fillcolor"]
from viz.backward import backward_dot


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.act1 = nn.ReLU()
        self.sum = Add()

    def forward(self, x):
        return self.sum(self.act1(self.bn1(self.conv1(x))), x)


class Add(nn.Module):
    def forward(self, a, b):
        return a + b


class TinyNet(nn.Module):
    """Submodule names follow the contract: stem, stage1.0.conv1, ..., flat, head."""

    def __init__(self, c=4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.stage1 = nn.Module()
        self.stage1.add_module("0", Block(c))
        self.stage1.add_module("1", Block(c))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        x = self.stem(x)
        x = getattr(self.stage1, "1")(getattr(self.stage1, "0")(x))
        return self.head(self.flat(self.pool(x)))


SPEC_PATHS = {"stem", "stage1.0.conv1", "stage1.0.bn1", "stage1.0.act1", "stage1.0.sum", "stage1.1.conv1",
              "stage1.1.bn1", "stage1.1.act1", "stage1.1.sum", "pool", "flat", "head"}


def tiny_trace(**kw):
    torch.manual_seed(0)
    net = TinyNet()
    y = torch.randint(0, 10, (4,))
    tr = record_backward(net, {"x": torch.randn(4, 3, 8, 8)}, lambda out: F.cross_entropy(out, y),
                         "cross_entropy", spec_paths=SPEC_PATHS)
    return net, tr


def test_leaves_root_clusters_and_direction():
    net, tr = tiny_trace()
    p = parse_dot(backward_dot(tr).to_dot())
    out_edges = {u for u, v, _ in p.edges}
    in_edges = {v for u, v, _ in p.edges}
    for name, _ in net.named_parameters():  # every parameter is a leaf of the backward graph
        assert name in p.nodes, name
        assert name not in out_edges and name in in_edges, name
        assert p.cluster_path(name)[-1] == name.rpartition(".")[0]
    assert "x" in p.nodes and "x" not in out_edges and p.cluster_path("x") == []
    assert "loss" not in in_edges and ("loss", tr.root) in {(u, v) for u, v, _ in p.edges}
    assert p.nodes["loss"]["label"].startswith("loss (root)")
    conv = "stage1.1.conv1:ConvolutionBackward0"
    assert p.cluster_path(conv) == ["stage1", "stage1.1", "stage1.1.conv1"]
    assert p.nodes[conv]["label"].split("\n")[:2] == ["Convolution backward", "ConvolutionBackward0"]
    assert "value 4 x 4 x 8 x 8" in p.nodes[conv]["label"]
    assert p.nodes["head:AddmmBackward0"]["label"].startswith("Linear (addmm) backward")
    assert p.cluster_path("#cross_entropy:NllLossBackward0") == ["#loss"]
    # micrograd's lesson: each spec node shows its forward value beside the gradients
    # (a caption on the row of its operation, so that no edge runs through the title)
    assert "value 4 x 4 x 8 x 8: mean" in p.nodes["stage1.1.act1:caption"]["label"]
    assert p.cluster_path("stage1.1.act1:caption")[-1] == "stage1.1.act1"
    mean = float(p.nodes["stage1.1.act1:caption"]["label"].split("mean ")[1].split(",")[0])
    assert mean > 0  # a ReLU output
    # gradients flow from the loss to the leaves: head before stem, op -> its parameters
    edges = {(u, v) for u, v, _ in p.edges}
    assert ("head:AddmmBackward0", "head.weight") in edges
    assert ("stage1.0.sum:AddBackward0", "stage1.0.act1:ReluBackward0") in edges
    assert ("stage1.0.sum:AddBackward0", "stem:ConvolutionBackward0") in edges  # the residual path
    assert ("stem:ConvolutionBackward0", "stage1.0.sum:AddBackward0") not in edges


def test_bookkeeping_folded_unless_full():
    _, tr = tiny_trace()
    folded = parse_dot(backward_dot(tr).to_dot())
    assert not [n for n in folded.nodes if "AccumulateGrad" in n or "TBackward" in n]
    assert "flat:ViewBackward0" in folded.nodes  # the only node of spec node `flat` stays
    full = parse_dot(backward_dot(tr, full=True).to_dot())
    assert "head:TBackward0" in full.nodes and "head.weight:AccumulateGrad" in full.nodes
    assert ("head.weight:AccumulateGrad", "head.weight") in {(u, v) for u, v, _ in full.edges}
    assert full.cluster_path("x:AccumulateGrad") == []


class DeepMLP(nn.Module):
    def __init__(self, act, depth=10, width=64):
        super().__init__()
        self.depth = depth
        for i in range(depth):
            self.add_module(f"fc{i}", nn.Linear(64 if i == 0 else width, width))
            self.add_module(f"act{i}", act())
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        for i in range(self.depth):
            x = getattr(self, f"act{i}")(getattr(self, f"fc{i}")(x))
        return self.head(x)


def mlp_picture(act):
    torch.manual_seed(0)
    y = torch.randint(0, 10, (32,))
    tr = record_backward(DeepMLP(act), {"x": torch.randn(32, 64)}, lambda o: F.cross_entropy(o, y))
    return parse_dot(backward_dot(tr, grads=True).to_dot())


def test_grads_show_vanishing_sigmoid_not_relu():
    sig, relu = mlp_picture(nn.Sigmoid), mlp_picture(nn.ReLU)
    for p in (sig, relu):
        assert "#legend" in p.clusters and p.cluster_path("#legend:0") == ["#legend"]
    # first layers of the sigmoid net: flagged in the alarm colour; the ReLU net's are healthy shades
    for name in ("fc0.weight", "fc1.weight"):
        assert sig.nodes[name]["fillcolor"] == VANISHING and "VANISHING GRADIENT" in sig.nodes[name]["label"]
        assert PALETTE.index(relu.nodes[name]["fillcolor"]) >= 2  # 1e-5 and above
        assert "VANISHING" not in relu.nodes[name]["label"]
    assert sig.clusters["fc0"]["attrs"]["color"] == VANISHING
    assert relu.clusters["fc0"]["attrs"]["color"] in PALETTE
    # the last layer is healthy in both: a dark shade of the scale, no alarm
    assert "VANISHING" not in sig.nodes["head.weight"]["label"]
    assert PALETTE.index(sig.nodes["head.weight"]["fillcolor"]) >= 5


class Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(4, 4)
        self.unused = nn.Linear(4, 4)
        self.dead = nn.Linear(4, 4)
        self.big = nn.Linear(4, 4)

    def forward(self, x):
        return self.used(x) + 0.0 * self.dead(x) + 1e5 * self.big(x)


def test_flags_none_zero_nan_exploding():
    torch.manual_seed(0)
    tr = record_backward(Odd(), {"x": torch.randn(2, 4)}, lambda o: o.pow(2).mean())
    p = parse_dot(backward_dot(tr, grads=True).to_dot())
    assert "NO GRADIENT" in p.nodes["unused.weight"]["label"]
    assert p.nodes["unused.weight"]["style"] == "filled,dashed"
    assert "ZERO GRADIENT" in p.nodes["dead.weight"]["label"] and p.nodes["dead.weight"]["fillcolor"] == "black"
    assert "EXPLODING GRADIENT" in p.nodes["big.weight"]["label"]
    x = torch.randn(2, 4)
    x[0, 0] = math.nan
    tr = record_backward(Odd(), {"x": x}, lambda o: o.pow(2).mean())
    p = parse_dot(backward_dot(tr, grads=True).to_dot())
    assert "NaN/Inf GRADIENT" in p.nodes["used.weight"]["label"]
    assert p.clusters["used"]["attrs"]["color"] == "#ff00ff"


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(20, 8)
        self.head = nn.Linear(8, 20, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx):
        return self.head(self.wte(idx))


def test_tied_parameter_is_one_leaf_and_int_inputs_carry_no_grad():
    tr = record_backward(Tied(), {"idx": torch.randint(0, 20, (2, 5))}, lambda o: o.pow(2).mean())
    p = parse_dot(backward_dot(tr).to_dot())
    assert "head.weight" not in p.nodes
    assert "also head.weight (tied)" in p.nodes["wte.weight"]["label"]
    into = {u for u, v, _ in p.edges if v == "wte.weight"}
    assert {"wte:EmbeddingBackward0"} <= into and any(u.startswith("head:") for u in into)
    assert "no gradient" in p.nodes["idx"]["label"]


def test_same_step_gives_identical_dot():
    assert backward_dot(tiny_trace()[1]).to_dot() == backward_dot(tiny_trace()[1]).to_dot()


def test_frozen_parameters_are_leaves_without_alarm():
    net = Odd()
    net.used.requires_grad_(False)
    tr = record_backward(net, {"x": torch.randn(2, 4)}, lambda o: o.pow(2).mean())
    p = parse_dot(backward_dot(tr, grads=True).to_dot())
    label = p.nodes["used.weight"]["label"]
    assert "frozen (requires_grad=False)" in label and "NO GRADIENT" not in label
    assert "NO GRADIENT" in p.nodes["unused.weight"]["label"]
    assert p.clusters["unused"]["attrs"]["style"] == "rounded,filled,dashed"
    assert p.clusters["used"]["attrs"]["fillcolor"] == "white"  # frozen only: nothing to colour
