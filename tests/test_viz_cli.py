"""`build viz` end to end on real specs: files written, DOT/SVG parsed back, exit codes."""

import re

import pytest
import torch

import builder
from builder.commands.cli import main
from viz.dot_render import parse_dot
from viz.grad_heat import FLAG_STYLE, PALETTE

VANISHING = FLAG_STYLE["vanishing"]["fillcolor"]

TINY_RESNET = """\
spec: 1
name: tiny-resnet
params: {width: 8, blocks: 2, classes: 10}
inputs:
  x: {shape: [B, 3, 16, 16]}
blocks:
  basic:
    params: {c: 16, stride: 1}
    inputs: [x]
    nodes:
      conv1: {op: Conv2d, out_channels: ${c}, kernel_size: 3, stride: ${stride}, padding: 1, bias: false}
      bn1:   {op: BatchNorm2d}
      act1:  {op: ReLU}
      conv2: {op: Conv2d, out_channels: ${c}, kernel_size: 3, padding: 1, bias: false}
      bn2:   {op: BatchNorm2d}
      sum:   {op: add, in: [bn2, x]}
      out:   {op: ReLU}
    outputs: [out]
nodes:
  stem:   {op: Conv2d, in: x, out_channels: ${width}, kernel_size: 3, padding: 1}
  stage1: {block: basic, repeat: ${blocks}, c: ${width}}
  pool:   {op: AdaptiveAvgPool2d, output_size: 1}
  flat:   {op: Flatten}
  head:   {op: Linear, out_features: ${classes}}
outputs: [head]
"""

DEEP_MLP = """\
spec: 1
name: deep-{act}
params: {{depth: 10, width: 64}}
inputs:
  x: {{shape: [B, 64]}}
blocks:
  layer:
    inputs: [x]
    nodes:
      fc:  {{op: Linear, out_features: ${{width}}}}
      act: {{op: {act}}}
    outputs: [act]
nodes:
  layers: {{block: layer, repeat: ${{depth}}}}
  head: {{op: Linear, out_features: 10}}
outputs: [head]
"""


@pytest.fixture
def resnet_spec(tmp_path):
    p = tmp_path / "tiny_resnet.yaml"
    p.write_text(TINY_RESNET)
    return p


def viz(*argv):
    return main(["viz", *map(str, argv)])


def test_forward_svg_and_dot(resnet_spec, tmp_path, capsys):
    out = tmp_path / "f.svg"
    assert viz(resnet_spec, "-o", out, "--depth", "-1") == 0
    assert "wrote" in capsys.readouterr().out
    titles = set(re.findall(r"<title>(.*?)</title>", out.read_text()))
    assert {"stem", "stage1.1.conv2", "cluster_stage1", "cluster_stage1.0", "out:head"} <= titles
    p = parse_dot((tmp_path / "f.dot").read_text())
    assert p.cluster_path("stage1.0.sum") == ["stage1", "stage1.0"]
    assert any(a.get("label", "").startswith("skip: B x 8 x 16 x 16") for _, _, a in p.edges)
    assert p.nodes["stem"]["label"].split("\n")[-1] == "224 params"


def test_dot_is_byte_identical_across_runs(resnet_spec, tmp_path):
    a, b = tmp_path / "a.dot", tmp_path / "b.dot"
    assert viz(resnet_spec, "-o", a) == 0 and viz(resnet_spec, "--format", "dot", "-o", b) == 0
    assert a.read_bytes() == b.read_bytes()


def test_backward_dot_is_byte_identical_across_runs(resnet_spec, tmp_path):
    a, b = tmp_path / "a.dot", tmp_path / "b.dot"
    assert viz(resnet_spec, "--view", "backward", "--grads", "-o", a) == 0
    assert viz(resnet_spec, "--view", "backward", "--grads", "-o", b) == 0
    assert a.read_bytes() == b.read_bytes()


def test_backward_same_names_and_clusters_as_forward(resnet_spec, tmp_path):
    assert viz(resnet_spec, "--view", "backward", "--depth", "-1", "--format", "dot", "-o", tmp_path / "b.dot") == 0
    assert viz(resnet_spec, "--depth", "-1", "--format", "dot", "-o", tmp_path / "f.dot") == 0
    bwd = parse_dot((tmp_path / "b.dot").read_text())
    fwd = parse_dot((tmp_path / "f.dot").read_text())
    module = builder.build(builder.load(resnet_spec))
    sources = {u for u, _, _ in bwd.edges}
    for name, _ in module.named_parameters():
        assert name in bwd.nodes and name not in sources, name
    assert set(fwd.clusters) <= set(bwd.clusters)
    for cl in ("stage1", "stage1.0", "stage1.1"):
        assert bwd.clusters[cl]["attrs"]["label"] == fwd.clusters[cl]["attrs"]["label"]
    conv = "stage1.1.conv2:ConvolutionBackward0"
    assert bwd.cluster_path(conv) == ["stage1", "stage1.1", "stage1.1.conv2"]
    assert bwd.cluster_path("stage1.1.conv2.weight") == ["stage1", "stage1.1", "stage1.1.conv2"]
    assert fwd.cluster_path("stage1.1.conv2") == ["stage1", "stage1.1"]
    assert "random inputs, batch 8" in (tmp_path / "b.dot").read_text()  # no train data in this spec


def test_both_views_side_by_side(resnet_spec, tmp_path):
    assert viz(resnet_spec, "--view", "both", "-o", tmp_path / "both.dot") == 0
    p = parse_dot((tmp_path / "both.dot").read_text())
    assert p.cluster_path("fwd:stem") == ["fwd:view"]
    assert p.cluster_path("bwd:stem.weight") == ["bwd:view", "bwd:stem"]
    assert ("bwd:loss", next(v for u, v, _ in p.edges if u == "bwd:loss")) in {(u, v) for u, v, _ in p.edges}


def deep_picture(tmp_path, act, *extra):
    spec = tmp_path / f"deep_{act}.yaml"
    spec.write_text(DEEP_MLP.format(act=act))
    out = tmp_path / f"{act}.dot"
    assert viz(spec, "--view", "backward", "--grads", "-o", out, *extra) == 0
    return spec, parse_dot(out.read_text())


def svg_fill(svg: str, node: str) -> str:
    """The fill colour graphviz gave node `node` in an SVG picture."""
    m = re.search(r"<title>" + re.escape(node) + r"</title>\s*<polygon fill=\"([^\"]+)\"", svg)
    return m.group(1)


def test_grads_colours_in_the_svg(tmp_path):
    for act, cold in (("Sigmoid", True), ("ReLU", False)):
        spec = tmp_path / f"{act}.yaml"
        spec.write_text(DEEP_MLP.format(act=act))
        assert viz(spec, "--view", "backward", "--grads", "-o", tmp_path / f"{act}.svg") == 0
        svg = (tmp_path / f"{act}.svg").read_text()
        assert (svg_fill(svg, "layers.0.fc.weight") == VANISHING) == cold
        assert svg_fill(svg, "layers.0.fc.weight") in PALETTE or cold
        assert PALETTE.index(svg_fill(svg, "head.weight")) >= 5
        titles = set(re.findall(r"<title>(.*?)</title>", svg))
        assert {"cluster_layers.0.fc", "layers.0.fc:AddmmBackward0&#45;&gt;layers.0.fc.weight",
                "loss"} <= titles


def test_grads_sigmoid_spec_vanishes_relu_does_not(tmp_path):
    _, sig = deep_picture(tmp_path, "Sigmoid")
    _, relu = deep_picture(tmp_path, "ReLU")
    first = "layers.0.fc.weight"
    assert sig.cluster_path(first) == ["layers", "layers.0", "layers.0.fc"]
    assert sig.nodes[first]["fillcolor"] == VANISHING and "VANISHING" in sig.nodes[first]["label"]
    assert sig.clusters["layers.0"]["attrs"]["color"] == VANISHING
    assert "VANISHING" not in relu.nodes[first]["label"]
    assert PALETTE.index(relu.nodes[first]["fillcolor"]) >= 2  # 1e-5 and above
    assert relu.clusters["layers.0"]["attrs"]["color"] in PALETTE


def test_weights_are_loaded(tmp_path):
    spec, _ = deep_picture(tmp_path, "ReLU")
    module = builder.build(builder.load(spec))
    state = {k: torch.zeros_like(v) if k == "head.weight" else v for k, v in module.state_dict().items()}
    ckpt = tmp_path / "run"
    ckpt.mkdir()
    torch.save({"model": state, "epoch": 3}, ckpt / "last.pt")
    _, p = deep_picture(tmp_path, "ReLU", "--run", ckpt)
    assert "ZERO GRADIENT" in p.nodes["layers.0.fc.weight"]["label"]  # nothing flows past a zero head
    assert "ZERO GRADIENT" not in p.nodes["head.weight"]["label"]
    torch.save({"model": {"nope": torch.zeros(1)}}, tmp_path / "bad.pt")
    assert viz(spec, "--view", "backward", "--weights", tmp_path / "bad.pt", "-o", tmp_path / "x.dot") == 2


def test_missing_dot_binary(resnet_spec, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # simulate graphviz not installed
    assert viz(resnet_spec, "-o", tmp_path / "f.png") == 1
    err = capsys.readouterr().err
    assert "apt-get install graphviz" in err and str(tmp_path / "f.dot") in err
    assert (tmp_path / "f.dot").exists() and not (tmp_path / "f.png").exists()
    assert viz(resnet_spec, "-o", tmp_path / "g.dot") == 0


def test_user_errors_exit_2(resnet_spec, tmp_path, capsys):
    assert viz(tmp_path / "nope.yaml") == 2
    assert viz(tmp_path / "nope.onnx") == 2
    (tmp_path / "m.onnx").write_bytes(b"")
    assert viz(tmp_path / "m.onnx", "--view", "backward") == 2
    (tmp_path / "bad.onnx").write_bytes(b"\x08\xff\xff garbage")
    assert viz(tmp_path / "bad.onnx", "-o", tmp_path / "o.dot") == 2
    assert "not a readable ONNX model" in capsys.readouterr().err


GAN = """\
spec: 1
name: tiny-gan
networks:
  generator:
    inputs: {z: {shape: [B, 4]}}
    nodes:
      fc: {op: Linear, out_features: 8}
      act: {op: Tanh}
    outputs: [act]
  discriminator:
    inputs: {x: {shape: [B, 8]}}
    nodes:
      fc: {op: Linear, out_features: 1}
    outputs: [fc]
"""


def test_every_network_of_a_spec_in_one_forward_picture(tmp_path):
    spec = tmp_path / "gan.yaml"
    spec.write_text(GAN)
    assert viz(spec, "-o", tmp_path / "g.dot") == 0
    p = parse_dot((tmp_path / "g.dot").read_text())
    assert p.cluster_path("generator:fc") == ["generator:view"]
    assert p.cluster_path("discriminator:fc") == ["discriminator:view"]
    assert viz(spec, "--view", "backward", "-o", tmp_path / "b.dot") == 2  # which network?
    assert viz(spec, "--view", "backward", "--network", "discriminator", "-o", tmp_path / "b.dot") == 0
    assert "fc.weight" in parse_dot((tmp_path / "b.dot").read_text()).nodes


def test_trainer_checkpoint_layout_is_read(tmp_path):
    spec, _ = deep_picture(tmp_path, "ReLU")
    module = builder.build(builder.load(spec))
    state = {k: torch.zeros_like(v) if k == "head.weight" else v for k, v in module.state_dict().items()}
    torch.save({"epoch": 1, "networks": {"model": state}}, tmp_path / "best.pt")
    _, p = deep_picture(tmp_path, "ReLU", "--weights", tmp_path / "best.pt")
    assert "ZERO GRADIENT" in p.nodes["layers.0.fc.weight"]["label"]


SHARED = """\
spec: 1
name: shared
inputs:
  x: {shape: [B, 8]}
nodes:
  enc: {op: Linear, out_features: 8}
  act: {op: Tanh}
  enc2: {op: Linear, out_features: 8, share: enc}
  head: {op: Linear, out_features: 2}
outputs: [head]
"""


def test_shared_module_calls_go_to_the_calling_spec_node(tmp_path):
    spec = tmp_path / "shared.yaml"
    spec.write_text(SHARED)
    assert viz(spec, "--view", "backward", "-o", tmp_path / "b.dot") == 0
    p = parse_dot((tmp_path / "b.dot").read_text())
    assert p.cluster_path("enc2:AddmmBackward0") == ["enc2"] and p.cluster_path("enc:AddmmBackward0") == ["enc"]
    assert "shares enc" in p.nodes["enc2:caption"]["label"]  # the title, on the row of its operation
    edges = {(u, v) for u, v, _ in p.edges}
    assert {("enc2:AddmmBackward0", "enc.weight"), ("enc:AddmmBackward0", "enc.weight")} <= edges
    assert ("enc2:AddmmBackward0", "act:TanhBackward0") in edges


def test_draw_function(resnet_spec, tmp_path):
    from builder.commands.viz import draw

    path = draw(resnet_spec, "backward", tmp_path / "b.svg", grads=True)
    assert path == tmp_path / "b.svg" and path.exists() and (tmp_path / "b.dot").exists()


def test_spec_nodes_named_like_picture_parts(tmp_path):
    spec = tmp_path / "names.yaml"
    spec.write_text("spec: 1\nname: names\ninputs:\n  x: {shape: [B, 4]}\nnodes:\n"
                    "  legend: {op: Linear, out_features: 4}\n  loss: {op: Linear, out_features: 2}\n"
                    "outputs: [loss]\n")
    assert viz(spec, "--view", "backward", "--grads", "-o", tmp_path / "b.dot") == 0
    p = parse_dot((tmp_path / "b.dot").read_text())
    assert p.cluster_path("legend.weight") == ["legend"] and p.cluster_path("loss.weight") == ["loss"]
    assert p.cluster_path("#legend:0") == ["#legend"] and p.nodes["loss"]["label"].startswith("loss (root)")
    assert p.cluster_path("loss:AddmmBackward0") == ["loss"]


def test_a_failing_step_is_a_user_error(tmp_path, capsys):
    spec = tmp_path / "bn.yaml"
    spec.write_text("spec: 1\nname: bn\ninputs:\n  x: {shape: [B, 4]}\nnodes:\n"
                    "  fc: {op: Linear, out_features: 4}\n  bn: {op: BatchNorm1d}\noutputs: [bn]\n")
    assert viz(spec, "--view", "backward", "--batch-size", "1", "-o", tmp_path / "b.dot") == 2
    assert "failed: Expected more than 1 value per channel" in capsys.readouterr().err
