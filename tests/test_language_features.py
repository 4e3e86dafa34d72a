"""Language features of issue 13 that a new user reaches for: a learned free tensor (`param`) joined by
a broadcasting `concat` or `expand`, named RNN state slots, `dim(NAME, I)` in expressions, `share:` on
block instances. Each spec is checked against an equivalent hand-written torch module: the parameter
count is computed from that module (never typed in) and the outputs are compared with its weights."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import builder
from builder.core.types import record
from export.onnx_export import export_onnx


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def spec_params(spec, network=None) -> int:
    return spec.network(network).total_params


# ---- ViT-style class token: param + broadcasting concat ----------------------------------------------

VIT = """
spec: 1
name: tiny-vit
params: {d: 32, patch: 8, image: 32}
inputs:
  x: {shape: [B, 3, 32, 32]}
nodes:
  conv_proj: {op: Conv2d, out_channels: ${d}, kernel_size: ${patch}, stride: ${patch}}
  flat: {op: Flatten, start_dim: 2}
  tokens: {op: transpose, dim0: 1, dim1: 2}
  class_token: {op: param, shape: [1, 1, "${d}"], init: zeros}
  seq: {op: concat, in: [class_token, tokens], dim: 1}
  pos: {op: learned_pe, max_len: ${(image // patch) ** 2 + 1}}
  norm: {op: LayerNorm}
  cls_out: {op: select, dim: 1, index: 0}
  head: {op: Linear, out_features: 10}
"""


class TinyViT(nn.Module):
    """After torchvision's VisionTransformer: conv_proj, class_token [1, 1, D], pos_embedding [1, N+1, D]."""

    def __init__(self, d=32, patch=8, image=32):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, d, patch, stride=patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embedding = nn.Parameter(torch.empty(1, (image // patch) ** 2 + 1, d).normal_(std=0.02))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.head(self.ln(x + self.pos_embedding)[:, 0])


def test_vit_class_token_is_a_param_joined_by_a_broadcasting_concat(tmp_path):
    spec = builder.load(VIT)
    ref = TinyViT()
    assert spec_params(spec) == n_params(ref)
    g = spec.network().graph
    assert record(g, "class_token").out_shape == (1, 1, 32) and record(g, "class_token").sources == ()
    assert record(g, "seq").out_shape == ("B", 17, 32)
    module = builder.build(spec)
    assert torch.count_nonzero(module.class_token.weight) == 0      # init: zeros
    with torch.no_grad():
        ref.class_token.normal_()
    builder.load_weights(module, ref.state_dict(), {"rules": [
        {"from": "class_token", "to": "class_token.weight"},
        {"from": "pos_embedding", "to": "pos.weight", "reshape": [-1, 32]},
        {"from": "ln.{p}", "to": "norm.{p}"}, {"from": "{k*}", "to": "{k}"}]})
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(module(x), ref(x))
    # trainable like any other parameter, and exported with B dynamic
    module(x).sum().backward()
    assert module.class_token.weight.grad is not None and module.class_token.weight.grad.abs().sum() > 0
    export_onnx(module, tmp_path / "vit.onnx", spec=spec)


def test_expand_reads_named_dims_from_any_input_and_concat_refuses_other_sizes():
    spec = builder.load("""
spec: 1
inputs: {x: {shape: [B, N, 8]}}
nodes:
  tok: {op: param, shape: [1, 1, 8]}
  many: {op: expand, in: [tok, x], shape: [B, 2, -1]}
  seq: {op: concat, in: [many, x], dim: 1}
""")
    assert record(spec.network().graph, "seq").out_shape == ("B", "N+2", 8)
    module = builder.build(spec)
    x = torch.randn(4, 5, 8)
    out = module(x)
    assert out.shape == (4, 7, 8) and torch.equal(out[:, 2:], x)
    assert torch.equal(out[:, :2], module.tok.weight.expand(4, 2, 8))
    with pytest.raises(builder.SpecError, match="cannot concat along dim 1"):
        builder.load("""
spec: 1
inputs: {x: {shape: [B, N, 8]}}
nodes:
  tok: {op: param, shape: [1, 1, 4]}
  seq: {op: concat, in: [tok, x], dim: 1}
""")
    with pytest.raises(builder.SpecError, match="only size-1 dims expand"):
        builder.load("""
spec: 1
inputs: {x: {shape: [B, N, 8]}}
nodes:
  e: {op: expand, shape: [B, N, 9]}
""")


# ---- named RNN state slots -------------------------------------------------------------------------

def test_named_rnn_state_slots_in_any_order_equal_torch():
    spec = builder.load("""
spec: 1
inputs: {src: {shape: [B, T, 4]}, tgt: {shape: [B, S, 4]}}
nodes:
  enc: {op: LSTM, in: src, hidden_size: 8}
  dec: {op: LSTM, in: {c: enc.c, x: tgt, h: enc.h}, hidden_size: 8}
  genc: {op: GRU, in: src, hidden_size: 8}
  gdec: {op: GRU, in: {h: genc.h, x: tgt}, hidden_size: 8}
outputs: [dec.output, gdec.output]
""")
    module = builder.build(spec)
    src, tgt = torch.randn(2, 5, 4), torch.randn(2, 3, 4)
    dec, gdec = module(src, tgt)
    _, (h, c) = module.enc.rnn(src)
    torch.testing.assert_close(dec, module.dec.rnn(tgt, (h, c))[0])
    torch.testing.assert_close(gdec, module.gdec.rnn(tgt, module.genc.rnn(src)[1])[0])
    with pytest.raises(builder.SpecError, match="needs both `h` and `c`"):
        builder.load("""
spec: 1
inputs: {src: {shape: [B, T, 4]}}
nodes:
  enc: {op: LSTM, hidden_size: 8}
  dec: {op: LSTM, in: {x: src, h: enc.h}, hidden_size: 8}
""")


# ---- share: on a block instance (a Siamese network) ---------------------------------------------------

SIAMESE = """
spec: 1
name: siamese
params: {first: left}
inputs:
  a: {shape: [B, 1, 16, 16]}
  b: {shape: [B, 1, 16, 16]}
blocks:
  tower:
    nodes:
      conv: {op: Conv2d, out_channels: 4, kernel_size: 3}
      bn: {op: BatchNorm2d}
      act: {op: ReLU}
      flat: {op: Flatten}
      fc: {op: Linear, out_features: 8}
nodes:
  left: {block: tower, in: a}
  right: {block: tower, in: b, share: "${first}"}
  dist: {op: PairwiseDistance, in: [left, right]}
"""


class Siamese(nn.Module):
    def __init__(self):
        super().__init__()
        self.tower = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(784, 8))

    def forward(self, a, b):
        return nn.functional.pairwise_distance(self.tower(a), self.tower(b))


def test_block_share_makes_one_tower_of_weights():
    spec = builder.load(SIAMESE)
    ref = Siamese()
    assert spec_params(spec) == n_params(ref)
    g = spec.network().graph
    assert record(g, "right.fc").share == "left.fc" and record(g, "right.fc").param_count == 0
    assert g.graph["blocks"]["right"]["share"] == "left"
    module = builder.build(spec)
    assert not any(k.startswith("right.") for k in module.state_dict())
    names = ["conv", "bn", "act", "flat", "fc"]
    builder.load_weights(module, ref.state_dict(), {"rules": [
        {"from": f"tower.{i}.{{p}}", "to": f"left.{n}.{{p}}"} for i, n in enumerate(names)]})
    a, b = torch.randn(3, 1, 16, 16), torch.randn(3, 1, 16, 16)
    module.eval(), ref.eval()
    torch.testing.assert_close(module(a, b), ref(a, b))
    # one set of weights: a training step moves both towers together
    module.train()
    module(a, b).sum().backward()
    assert module.left.fc.weight.grad is not None


def test_block_share_errors_name_the_instance():
    bad = SIAMESE.replace('share: "${first}"', "share: lefty")
    with pytest.raises(builder.SpecError, match="share: no block instance 'lefty'.*did you mean 'left'"):
        builder.load(bad)
    other = SIAMESE.replace("  right: {block: tower, in: b", "  right: {block: small, in: b").replace(
        "nodes:\n  left:", "  small:\n    nodes:\n      conv: {op: Conv2d, out_channels: 4, kernel_size: 3}\n"
        "nodes:\n  left:")
    with pytest.raises(builder.SpecError, match="differ in structure"):
        builder.load(other)


# ---- dim(NAME, I): sizes of what a node receives -----------------------------------------------------

MOBILE = """
spec: 1
name: mobile
inputs:
  x: {shape: [B, 3, 32, 32]}
blocks:
  inverted:
    params: {t: 6, out: 16, stride: 1}
    inputs: [x]
    nodes:
      expand: {op: Conv2d, out_channels: "${dim(x, 1) * t}", kernel_size: 1, bias: false}
      bn1: {op: BatchNorm2d}
      act1: {op: ReLU6}
      dw: {op: Conv2d, out_channels: "${dim(expand, 1)}", kernel_size: 3, stride: "${stride}", padding: 1,
           groups: "${dim(expand, 1)}", bias: false}
      bn2: {op: BatchNorm2d}
      act2: {op: ReLU6}
      project: {op: Conv2d, out_channels: "${out}", kernel_size: 1, bias: false}
      bn3: {op: BatchNorm2d}
      res: {op: add, in: [bn3, x], when: "${stride == 1 and dim(x, 1) == out}"}
nodes:
  stem: {op: Conv2d, out_channels: 8, kernel_size: 3, padding: 1}
  b1: {block: inverted, out: 16, t: 1}
  b2: {block: inverted, out: "${dim(b1, 1) * 2}", stride: 2}
  b3: {block: inverted, out: 32}
"""


class InvertedResidual(nn.Module):
    """torchvision's MobileNetV2 InvertedResidual: expand 1x1, depthwise 3x3, project 1x1, skip when it fits."""

    def __init__(self, inp, out, stride, t):
        super().__init__()
        hidden = inp * t
        self.use_res_connect = stride == 1 and inp == out
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


def test_dim_reads_the_channels_a_block_receives():
    spec = builder.load(MOBILE)
    ref = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), InvertedResidual(8, 16, 1, 1), InvertedResidual(16, 32, 2, 6),
                        InvertedResidual(32, 32, 1, 6))
    assert spec_params(spec) == n_params(ref)
    g = spec.network().graph
    assert record(g, "b2.expand").args["out_channels"] == 96 and record(g, "b2.dw").args["groups"] == 96
    assert record(g, "b2.bn3").out_shape == ("B", 32, 16, 16)
    # the skip is decided by the sizes: b1 (8 -> 16) and b2 (stride 2) pass through, b3 (32 -> 32) adds
    assert [record(g, f"b{i}.res").op for i in (1, 2, 3)] == ["Identity", "Identity", "add"]
    module = builder.build(spec).eval()
    module.load_state_dict(dict(zip(module.state_dict(), ref.state_dict().values())))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(module(x), ref.eval()(x))


NOT_HERE = "sizes can be read in op arguments, block params and an op node's `when`, not here"


@pytest.mark.parametrize("node,message", [
    ("{op: Linear, out_features: '${dim(x, 1)}'}", "dim(x, 1) is the symbolic size 'T' of [B,T,8]"),
    ("{op: Linear, out_features: '${dim(x, 5)}'}", "'x' is [B,T,8], which has no dim 5"),
    ("{op: Linear, out_features: '${dim(y, 2)}'}", "dim(y, 2): unknown node 'y'"),
    ("{op: Linear, out_features: '${dim(later, 2)}'}", "the size of 'later' is not known here"),
    ("{block: two, repeat: '${dim(x, 2)}'}", NOT_HERE),
    ("{block: two, when: '${dim(x, 2) == 8}'}", NOT_HERE),
    ("{op: ReLU, when: '${dim(x, 2)}'}", "`when` must be true or false, got 8"),
])
def test_dim_errors_say_what_cannot_be_read(node, message):
    text = f"""
spec: 1
inputs: {{x: {{shape: [B, T, 8]}}}}
blocks:
  two: {{nodes: {{fc: {{op: Linear, out_features: 2}}}}}}
nodes:
  first: {node}
  later: {{op: Linear, in: x, out_features: 3}}
"""
    with pytest.raises(builder.SpecError) as info:
        builder.load(text)
    assert message in str(info.value)


# ---- node names ---------------------------------------------------------------------------------------

def test_digit_node_names_as_in_torchvision_and_a_refused_last_name_is_one_error():
    spec = builder.load("""
spec: 1
inputs: {x: {shape: [B, 8]}}
blocks:
  seq:
    nodes:
      0: {op: Linear, out_features: 4}
      1: {op: ReLU}
      6: {op: Linear, in: 1, out_features: 2}
nodes:
  classifier: {block: seq}
""")
    module = builder.build(spec)
    assert list(module.state_dict()) == ["classifier.0.weight", "classifier.0.bias", "classifier.6.weight",
                                         "classifier.6.bias"]
    assert [o.node for o in spec.network().outputs] == ["classifier.6"]
    with pytest.raises(builder.SpecError) as info:
        builder.load("spec: 1\ninputs: {x: {shape: [B, 8]}}\nnodes:\n  classifier.6: {op: Linear, out_features: 4}\n")
    assert len(info.value.diagnostics) == 1
    assert "node name 'classifier.6' must be a word of letters, digits, _ or - (no dots" in str(info.value)


# ---- a VAE with randn_like and exp ------------------------------------------------------------------

class VAE(nn.Module):
    """The classic VAE of the PyTorch examples, at specs/vae.yaml's sizes."""

    def __init__(self, features=64, hidden=32, code=8):
        super().__init__()
        self.enc, self.mu, self.logvar = nn.Linear(features, hidden), nn.Linear(hidden, code), nn.Linear(hidden, code)
        self.dec, self.out = nn.Linear(code, hidden), nn.Linear(hidden, features)

    def forward(self, x):
        h = torch.relu(self.enc(x))
        mu, logvar = self.mu(h), self.logvar(h)
        std = torch.exp(0.5 * logvar)
        z = mu + torch.randn_like(std) * std
        return torch.sigmoid(self.out(torch.relu(self.dec(z)))), mu, logvar


def test_vae_spec_equals_the_torch_vae_and_exports_with_its_sample(tmp_path):
    spec = builder.load("specs/vae.yaml")
    ref = VAE()
    assert spec_params(spec) == n_params(ref)
    module = builder.build(spec)
    builder.load_weights(module, ref.state_dict(), {"rules": [{"from": "out.{p}", "to": "dec_out.{p}"},
                                                              {"from": "{k*}", "to": "{k}"}]})
    x = torch.rand(6, 64)
    torch.manual_seed(3)
    got = module(x)
    torch.manual_seed(3)
    want = ref(x)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    result = export_onnx(module, tmp_path / "vae.onnx", spec=spec)
    assert {c.output for c in result.comparisons} == {"mu", "logvar"}   # the reconstruction is a sample


def test_param_takes_any_initialiser_and_can_be_frozen():
    spec = builder.load("""
spec: 1
inputs: {x: {shape: [B, 4]}}
nodes:
  scale: {op: param, shape: [4], init: {type: constant, value: 0.5}}
  bias: {op: param, shape: [1, 4], init: {type: normal, std: 0.02}, trainable: false}
  out: {op: mul, in: [x, scale]}
  shifted: {op: add, in: [out, bias]}
""")
    net = spec.network()
    assert net.total_params == 8 and net.trainable_params == 4
    module = builder.build(spec)
    assert torch.equal(module.scale.weight, torch.full((4,), 0.5))
    assert module.bias.weight.std() > 0 and not module.bias.weight.requires_grad
    x = torch.randn(3, 4)
    torch.testing.assert_close(module(x), x * 0.5 + module.bias.weight)
