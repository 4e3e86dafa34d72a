"""Every kind of zoo network exports to one verified ONNX file (small variants, to stay fast)."""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest

import builder
from export.onnx_export import export_onnx

SPECS = Path(__file__).resolve().parents[1] / "specs"

CASES = [  # spec, overrides, network, dims that must stay dynamic
    ("lenet5", {}, None, ["B"]),
    ("char_lstm", {"vocab": 16, "embed": 8, "hidden": 16, "layers": 2}, None, ["B", "T"]),
    ("rnn_sine", {}, None, ["B"]),
    ("gan_tril", {}, "generator", ["B"]),
    ("resnet18", {"size": 32, "width": 8, "classes": 10}, None, ["B", "H", "W"]),
    ("transformer_encoder", {"d_model": 16, "heads": 2, "ffn": 32, "layers": 1}, None, ["B", "T"]),
    ("bert_base", {"hidden": 16, "layers": 1, "heads": 2, "intermediate": 32, "vocab": 50,
                   "max_positions": 32}, None, ["B", "T"]),
    ("gpt2", {"d_model": 16, "layers": 1, "heads": 2, "vocab": 50, "ctx": 32}, None, ["B", "T"]),
    ("vit_b_16", {"image_size": 16, "patch_size": 8, "hidden_dim": 16, "mlp_dim": 32, "num_layers": 1,
                  "num_heads": 2, "num_classes": 10}, None, ["B"]),          # a `param` class token, concat
    ("transformer", {"d_model": 16, "nhead": 2, "dim_feedforward": 32, "num_encoder_layers": 1,
                     "num_decoder_layers": 1}, None, ["B", "S", "T"]),      # two sequences, causal decoder
    ("siamese", {"size": 8, "width": 4, "embedding": 16}, None, ["B"]),     # one tower called twice
    ("vgg11", {"size": 64, "width": 4, "hidden": 32, "num_classes": 10}, None, ["B", "H", "W"]),  # 7x7 adaptive pool
    ("densenet121", {"size": 64, "growth_rate": 4, "num_init_features": 8, "block1": 1, "block2": 1, "block3": 1,
                     "block4": 1, "num_classes": 10}, None, ["B", "H", "W"]),  # concat skips, H >= 29
    ("convnext_tiny", {"size": 32, "c1": 8, "c2": 16, "c3": 32, "c4": 64, "d1": 1, "d2": 1, "d3": 1, "d4": 1,
                       "num_classes": 10}, None, ["B", "H", "W"]),   # LayerNorm2d, layer-scale param, DropPath
    ("efficientnet_b0", {"size": 32, "width_mult": 0.25, "depth_mult": 0.1, "num_classes": 10}, None, ["B", "H", "W"]),  # SE gates
    # rolls, windows, relative-position bias and the shift mask (buffers); the window grid fixes H, W
    ("swin_t", {"image_size": 32, "patch_size": 2, "window": 2, "embed_dim": 8, "h1": 1, "h2": 1, "h3": 2, "h4": 2,
                "d1": 2, "d2": 1, "d3": 1, "d4": 1, "mlp_ratio": 2, "num_classes": 10}, None, ["B"]),
]


@pytest.mark.parametrize("name,overrides,network,dynamic", CASES, ids=[c[0] for c in CASES])
def test_zoo_spec_exports_and_verifies(tmp_path, name, overrides, network, dynamic):
    spec = builder.load(SPECS / f"{name}.yaml", **overrides)
    module = builder.build(spec, network=network)
    result = export_onnx(module, tmp_path / "m.onnx", spec=spec, network=network)
    assert result.dynamic == dynamic and len(result.shapes_checked) >= 3
    assert result.max_abs < 1e-3 and not result.external_data
    model = onnx.load(str(tmp_path / "m.onnx"))
    for inp, ts in zip(model.graph.input, module.build_info.inputs):
        assert inp.name == ts.name
        got = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        assert got == [d if isinstance(d, int) else d for d in ts.shape]
    graph_nodes = set(spec.network(network).graph.nodes)
    named = {n.name.rsplit("/", 2)[-2] for n in model.graph.node if n.name.count("/") >= 2}
    assert named and named <= graph_nodes  # every named group is a spec path of the network
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
