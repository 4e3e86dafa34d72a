"""The zoo's parameter counts: `build summary --json` at each spec's defaults equals the published figure.

`summary` counts parameters from the graph (modules built on the meta device), so even GPT-2 and BERT
are checked here without allocating a single weight.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import builder
from builder.commands.cli import main as build_main

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"

# spec -> parameter count at the defaults (published figures where there are any)
EXPECTED = {
    "linear_regression": 3,
    "softmax_regression": 650,
    "mlp": 203_530,
    "mlp_digits": 64 * 128 + 128 + 128 * 10 + 10,
    "xor_mlp": 2 * 8 + 8 + 8 * 2 + 2,
    "lenet5": 61_706,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "rnn_sine": (1 * 16 + 16 * 16 + 2 * 16) + 16 + 1,
    "char_lstm": 128 * 32 + 4 * (128 * 32 + 128 * 128 + 2 * 128) + 128 * 128 + 128,
    # torch.nn.TransformerEncoder(TransformerEncoderLayer(512, 8, 2048), 6): 6 x 3,152,384
    "transformer_encoder": 18_914_304,
    "bert_base": 109_482_240,
    "gpt2": 124_439_808,
    "gan_tril": (8 * 8 + 8 + 8 * 16 + 16) + (16 * 8 + 8 + 8 * 1 + 1),
    "autoencoder": (64 * 32 + 32 + 32 * 8 + 8) + (8 * 32 + 32 + 32 * 64 + 64),
    "vae": (64 * 32 + 32) + 2 * (32 * 8 + 8) + (8 * 32 + 32 + 32 * 64 + 64),  # encoder, mu and logvar, decoder
    # torchvision's published figures (its weights' meta "num_params")
    "vgg11": 132_863_336,
    "mobilenet_v2": 3_504_872,
    "densenet121": 7_978_856,
    "vit_b_16": 86_567_656,
    "convnext_tiny": 28_589_128,
    "efficientnet_b0": 5_288_548,
    "swin_t": 28_288_354,
    "transformer": 44_140_544,  # torch.nn.Transformer() at its defaults
    # one tower (conv 1->32, conv 32->64, 64*7*7 -> 128); the right tower shares it
    "siamese": (9 * 32 + 32) + (32 * 9 * 64 + 64) + (64 * 7 * 7 * 128 + 128),
}


def summary_json(capsys, *args):
    assert build_main(["summary", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_every_zoo_spec_is_counted():
    names = {p.stem for p in SPECS.glob("*.yaml") if not p.name.endswith("-map.yaml")}
    assert set(EXPECTED) <= names, f"specs missing from specs/: {sorted(set(EXPECTED) - names)}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_param_count_at_defaults(name, capsys):
    data = summary_json(capsys, SPECS / f"{name}.yaml")
    assert data["total_params"] == EXPECTED[name]
    assert data["trainable_params"] == EXPECTED[name]
    assert sum(row["params"] for row in data["nodes"]) == EXPECTED[name]


def test_transformer_encoder_count_equals_torch():
    import torch
    from torch import nn
    with torch.device("meta"):
        ref = nn.TransformerEncoder(nn.TransformerEncoderLayer(512, 8, 2048, batch_first=True), 6,
                                    enable_nested_tensor=False)
    assert sum(p.numel() for p in ref.parameters()) == EXPECTED["transformer_encoder"]


def test_gpt2_summary_through_the_console_script():
    """The real `build` command, on the largest spec: tied head counted once, nothing allocated."""
    exe = Path(sys.executable).parent / "build"
    out = subprocess.run([str(exe), "summary", str(SPECS / "gpt2.yaml"), "--json"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["total_params"] == 124_439_808
    rows = {r["path"]: r for r in data["nodes"]}
    assert rows["lm_head"]["params"] == 0          # tied to wte.weight
    assert rows["wte"]["params"] == 50257 * 768


# Every spec exposes its sizes as params: a small variant is one --set away.
SMALL = {
    "linear_regression": {"features": 3},
    "softmax_regression": {"classes": 5},
    "mlp": {"hidden": 16, "size": 14},
    "mlp_digits": {"hidden": 16},
    "xor_mlp": {"hidden": 2},
    "lenet5": {"c1": 4, "c2": 8, "f1": 32, "f2": 16},
    "resnet18": {"size": 32, "width": 8, "classes": 10},
    "resnet50": {"size": 32, "width": 8, "classes": 10, "blocks3": 2},
    "rnn_sine": {"hidden": 4, "tau": 8},
    "char_lstm": {"vocab": 40, "hidden": 16, "embed": 8},
    "transformer_encoder": {"d_model": 32, "heads": 4, "ffn": 64, "layers": 2},
    "bert_base": {"hidden": 64, "layers": 2, "heads": 4, "intermediate": 128, "vocab": 100, "max_positions": 64},
    "gpt2": {"d_model": 64, "layers": 2, "heads": 4, "vocab": 256, "ctx": 128},
    "gan_tril": {"latent": 4, "size": 3},
    "autoencoder": {"code": 2, "hidden": 16},
    "vae": {"code": 2, "hidden": 16},
    "vgg11": {"width": 8, "hidden": 64, "num_classes": 10, "size": 32},
    "mobilenet_v2": {"width_mult": 0.25, "num_classes": 10, "size": 32},
    "densenet121": {"growth_rate": 8, "num_init_features": 16, "num_classes": 10, "size": 32},
    "vit_b_16": {"image_size": 32, "patch_size": 8, "hidden_dim": 32, "mlp_dim": 64, "num_layers": 2,
                 "num_heads": 4, "num_classes": 10},
    "convnext_tiny": {"c1": 8, "c2": 16, "c3": 32, "c4": 64, "d3": 2, "num_classes": 10, "size": 32},
    "efficientnet_b0": {"width_mult": 0.25, "depth_mult": 0.5, "num_classes": 10, "size": 32},
    "swin_t": {"image_size": 32, "patch_size": 2, "window": 2, "embed_dim": 8, "h1": 1, "h2": 2, "h3": 2, "h4": 4,
               "d3": 2, "num_classes": 10},
    "transformer": {"d_model": 32, "nhead": 4, "dim_feedforward": 64, "num_encoder_layers": 2,
                    "num_decoder_layers": 2},
    "siamese": {"size": 8, "width": 4, "embedding": 16},
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_variant_with_set(name, capsys):
    sets = [a for k, v in SMALL[name].items() for a in ("--set", f"{k}={v}")]
    data = summary_json(capsys, SPECS / f"{name}.yaml", *sets)
    assert 0 < data["total_params"] != EXPECTED[name]
    spec = builder.load(SPECS / f"{name}.yaml", **SMALL[name])
    assert spec.total_params == data["total_params"]
    assert set(SMALL[name]) <= set(spec.params)


def test_specs_never_need_transformers():
    """transformers is a test dependency only: building and running the zoo works with it blocked."""
    code = (
        "import sys; sys.modules['transformers'] = None\n"
        "import torch, builder\n"
        "m = builder.build('specs/gpt2.yaml', layers=1, d_model=16, heads=2, vocab=50, ctx=16)\n"
        "assert m(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 50)\n"
        "m = builder.build('specs/bert_base.yaml', layers=1, hidden=16, heads=2, intermediate=32, vocab=50)\n"
        "ids = torch.zeros(1, 4, dtype=torch.long)\n"
        "assert m(ids, ids, torch.ones_like(ids))[1].shape == (1, 16)\n"
        "from builder.commands import convert_weights\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
