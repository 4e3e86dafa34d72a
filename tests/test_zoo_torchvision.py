"""The zoo's torchvision models against references written after torchvision's source, with
torchvision's own state_dict names (tests/references/), loaded through `specs/<name>.torchvision-map.yaml`
exactly as `build convert-weights` uses them. Eval mode, float32, max |difference| <= 1e-5 at two input
shapes. MobileNetV2, DenseNet-121 and EfficientNet-B0 run at full size on small images; VGG-11 (132M parameters),
ViT-B/16 (86M), ConvNeXt-T (28.6M, 18 blocks) and Swin-T (28.3M; its window geometry kept) run at reduced
widths/depths through the specs' params,
and their full-size parameter counts equal the references' (both built on the meta device)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import builder
from builder.commands.cli import main as build_main
from builder.weights.loader import convert_state_dict
from references.convnext import ConvNeXt, convnext_tiny
from references.densenet import densenet121
from references.efficientnet import EfficientNet, efficientnet_b0
from references.mobilenetv2 import MobileNetV2
from references.swin_transformer import ShiftedWindowAttention, SwinTransformer, swin_t
from references.vgg import vgg11
from references.vision_transformer import vit_b_16

SPECS = Path(__file__).resolve().parents[1] / "specs"
TOL = 1e-5


def randomize(model, seed=0):
    """Every parameter and float buffer drawn at random (batch-norm variances kept positive), so neither a
    wrong mapping nor eval-mode batch norm can hide behind zeros and ones."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if t.is_floating_point():
                lo = 0.5 if name.endswith("running_var") else -0.3
                t.copy_(torch.rand(t.shape, generator=g) * 0.6 + lo)
    return model.eval()


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def through_map(name, ref, **sizes):
    ours = builder.build(SPECS / f"{name}.yaml", **sizes)
    builder.load_weights(ours, ref.state_dict(), SPECS / f"{name}.torchvision-map.yaml")
    return ours.eval()


def check(ref, ours, x):
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert want.shape == got.shape
    assert (want - got).abs().max().item() <= TOL
    assert want.abs().max().item() > 1e-3          # a real output, not a vanishing one


@pytest.fixture(scope="module")
def mobilenet():
    ref = randomize(MobileNetV2())
    return ref, through_map("mobilenet_v2", ref, size=48)


@pytest.mark.parametrize("batch,size", [(2, 48), (1, 33)])
def test_mobilenet_v2_full_size_matches_torchvision(mobilenet, batch, size):
    check(*mobilenet, torch.randn(batch, 3, size, size))


def test_mobilenet_v2_width_mult_rounds_as_torchvision():
    for width_mult in (0.35, 1.4):
        with torch.device("meta"):
            ref = MobileNetV2(num_classes=10, width_mult=width_mult)
        spec = builder.load(SPECS / "mobilenet_v2.yaml", width_mult=width_mult, num_classes=10)
        assert spec.total_params == n_params(ref)


@pytest.fixture(scope="module")
def densenet():
    ref = randomize(densenet121())
    return ref, through_map("densenet121", ref, size=32)


@pytest.mark.parametrize("batch,size", [(2, 32), (1, 45)])
def test_densenet121_full_size_matches_torchvision(densenet, batch, size):
    check(*densenet, torch.randn(batch, 3, size, size))


VGG_SMALL = {"width": 8, "hidden": 64, "num_classes": 10}


@pytest.mark.parametrize("batch,size", [(2, 32), (1, 75)])
def test_vgg11_matches_torchvision_at_reduced_width(batch, size):
    ref = randomize(vgg11(**VGG_SMALL))
    check(ref, through_map("vgg11", ref, size=size, **VGG_SMALL), torch.randn(batch, 3, size, size))


VIT_SMALL = {"image_size": 32, "patch_size": 8, "num_layers": 2, "num_heads": 4, "hidden_dim": 32, "mlp_dim": 64,
             "num_classes": 10}


@pytest.mark.parametrize("batch", [1, 3])
def test_vit_b_16_matches_torchvision_at_reduced_width(batch):
    ref = randomize(vit_b_16(**VIT_SMALL))
    ours = through_map("vit_b_16", ref, **VIT_SMALL)
    assert torch.equal(ours.class_token.weight, ref.class_token)     # the learned class token is a `param`
    check(ref, ours, torch.randn(batch, 3, 32, 32))


CONVNEXT_SMALL = {"c1": 8, "c2": 16, "c3": 32, "c4": 64, "d1": 1, "d2": 1, "d3": 2, "d4": 1, "num_classes": 10}


@pytest.fixture(scope="module")
def convnext():
    ref = randomize(ConvNeXt([(8, 16, 1), (16, 32, 1), (32, 64, 2), (64, None, 1)], num_classes=10))
    return ref, through_map("convnext_tiny", ref, **CONVNEXT_SMALL)


@pytest.mark.parametrize("batch,size", [(2, 32), (1, 45)])
def test_convnext_tiny_matches_torchvision_at_reduced_width(convnext, batch, size):
    check(*convnext, torch.randn(batch, 3, size, size))


def test_convnext_tiny_stochastic_depth_and_layer_scale_follow_torchvision():
    """Each block's DropPath rate is torchvision's (0.1 x its index over the network / 17), read off the
    copy index of the repeated block; a fresh layer scale starts at 1e-6 (its `init`), as torchvision's."""
    with torch.device("meta"):
        ref = convnext_tiny()
    ours = builder.build(SPECS / "convnext_tiny.yaml")
    stages = {1: 3, 3: 3, 5: 9, 7: 3}
    got = [ours.get_submodule(f"features.{s}.{j}.stochastic_depth").p for s, n in stages.items() for j in range(n)]
    want = [ref.features[s][j].sd_prob for s, n in stages.items() for j in range(n)]
    assert got == pytest.approx(want) and want[-1] == pytest.approx(0.1)
    assert torch.all(ours.get_submodule("features.5.4.layer_scale").weight == 1e-6)


@pytest.fixture(scope="module")
def efficientnet():
    ref = randomize(EfficientNet())
    return ref, through_map("efficientnet_b0", ref, size=32)


@pytest.mark.parametrize("batch,size", [(2, 32), (1, 45)])
def test_efficientnet_b0_full_size_matches_torchvision(efficientnet, batch, size):
    check(*efficientnet, torch.randn(batch, 3, size, size))


def test_efficientnet_b0_stochastic_depth_where_the_input_is_added_back():
    """DropPath sits (with torchvision's rate 0.2 x index / 16) exactly in the blocks with a residual."""
    from builder.ops.vision import DropPath
    ref = EfficientNet()
    ours = builder.build(SPECS / "efficientnet_b0.yaml", device="meta")
    got, want = [], []
    for s in range(1, 8):
        for j, block in enumerate(ref.features[s]):
            drop = ours.get_submodule(f"features.{s}.{j}.stochastic_depth")
            got.append(drop.p if isinstance(drop, DropPath) else None)
            want.append(block.sd_prob if block.use_res_connect else None)
    assert got == pytest.approx(want) and sum(p is not None for p in got) == 9


@pytest.mark.parametrize("width_mult,depth_mult,published", [(1.0, 1.1, 7_794_184), (1.1, 1.2, 9_109_994),
                                                              (1.2, 1.4, 12_233_232), (0.25, 0.1, None)])
def test_efficientnet_width_and_depth_mult_round_as_torchvision(width_mult, depth_mult, published):
    """B1-B3 are B0 with torchvision's multipliers: the published counts (its weights' num_params)."""
    with torch.device("meta"):
        ref = EfficientNet(num_classes=1000, width_mult=width_mult, depth_mult=depth_mult)
    spec = builder.load(SPECS / "efficientnet_b0.yaml", width_mult=width_mult, depth_mult=depth_mult)
    assert spec.total_params == n_params(ref) == (published or n_params(ref))


# Swin-T's geometry at an eighth of its width: 112 / 2 = 56 -> 28 -> 14 -> 7 tokens a side, 7x7 windows
# shifted by 3 in every second block except in the last stage (one window covers the map)
SWIN_SMALL = {"image_size": 112, "patch_size": 2, "embed_dim": 8, "h1": 1, "h2": 2, "h3": 2, "h4": 4, "d3": 2,
              "num_classes": 10}


@pytest.fixture(scope="module")
def swin():
    ref = randomize(SwinTransformer(patch_size=2, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
                                    num_classes=10))
    return ref, through_map("swin_t", ref, **SWIN_SMALL)


def attention_outputs(ref, ours, x):
    """Each block's window-attention output in both models (what the first stochastic depth receives)."""
    want, got = [], []
    hooks = []
    for s in (1, 3, 5, 7):
        for j, block in enumerate(ref.features[s]):
            hooks.append(block.attn.register_forward_hook(lambda m, i, o: want.append(o)))
            hooks.append(ours.get_submodule(f"features.{s}.{j}.stochastic_depth").register_forward_hook(
                lambda m, i, o: got.append(i[0])))
    with torch.no_grad():
        ref(x), ours(x)
    for h in hooks:
        h.remove()
    return want, got


@pytest.mark.parametrize("batch", [1, 2])
def test_swin_t_matches_torchvision_at_reduced_width(swin, batch):
    ref, ours = swin
    x = torch.randn(batch, 3, 112, 112)
    check(ref, ours, x)
    # block by block too: a wrong shift or mask moves a block's attention output by ~1e-2, the logits by less
    want, got = attention_outputs(ref, ours, x)
    assert len(want) == len(got) == 8
    assert max((w - g).abs().max().item() for w, g in zip(want, got)) <= TOL
    shifted = [ours.get_submodule(f"features.{s}.1.attn.unshifted").shifts for s in (1, 3, 5)]
    assert shifted == [(3, 3)] * 3 and not hasattr(ours.get_submodule("features.7.1.attn.unshifted"), "shifts")


def test_swin_t_from_scratch_builds_torchvision_s_index_and_drop_rates():
    """Nothing loaded: the relative-position index is there (a buffer, not a parameter, not saved) and
    equal to torchvision's; each block's stochastic depth is 0.2 x its index over the network / 11."""
    with torch.device("meta"):
        ref = swin_t()
    ours = builder.build(SPECS / "swin_t.yaml", **{k: v for k, v in SWIN_SMALL.items() if k != "d3"})
    bias = ours.get_submodule("features.5.3.attn.relative_position_bias")
    assert torch.equal(bias.index, ShiftedWindowAttention(4, [7, 7], [0, 0], 1).relative_position_index)
    assert not any("index" in k or "mask" in k for k in ours.state_dict())
    assert ours.get_submodule("features.1.1.attn.mask").mask.shape == (64, 1, 49, 49)
    stages = {1: 2, 3: 2, 5: 6, 7: 2}
    got = [ours.get_submodule(f"features.{s}.{j}.stochastic_depth").p for s, n in stages.items() for j in range(n)]
    assert got == pytest.approx([ref.features[s][j].sd_prob for s, n in stages.items() for j in range(n)])


@pytest.mark.parametrize("name,make", [("vgg11", vgg11), ("vit_b_16", vit_b_16), ("mobilenet_v2", MobileNetV2),
                                       ("densenet121", densenet121), ("convnext_tiny", convnext_tiny),
                                       ("efficientnet_b0", efficientnet_b0), ("swin_t", swin_t)])
def test_full_size_counts_equal_the_references(name, make):
    with torch.device("meta"):
        ref = make()
        ours = builder.build(SPECS / f"{name}.yaml", device="meta")
    assert n_params(ours) == n_params(ref)
    # the map covers the full-size model too: every torchvision key finds its spec key, same shapes
    converted = convert_state_dict(ref.state_dict(), SPECS / f"{name}.torchvision-map.yaml", ours)
    assert set(converted) == set(ours.state_dict())


def test_convert_weights_command_with_a_torchvision_map(tmp_path, capsys):
    """The CLI path: a torchvision-named checkpoint file in, the spec's state_dict out, loaded as is."""
    ref = randomize(MobileNetV2(num_classes=10, width_mult=0.25))
    torch.save(ref.state_dict(), tmp_path / "mobilenet_v2.pth")
    sets = ["--set", "width_mult=0.25", "--set", "num_classes=10", "--set", "size=32"]
    assert build_main(["convert-weights", str(SPECS / "mobilenet_v2.yaml"), *sets, "--from",
                       str(tmp_path / "mobilenet_v2.pth"), "--map", str(SPECS / "mobilenet_v2.torchvision-map.yaml"),
                       "-o", str(tmp_path / "w.pt")]) == 0
    assert "OK mobilenet_v2" in capsys.readouterr().out
    ours = builder.build(SPECS / "mobilenet_v2.yaml", width_mult=0.25, num_classes=10, size=32)
    ours.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    check(ref, ours.eval(), torch.randn(2, 3, 32, 32))
