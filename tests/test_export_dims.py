"""Export from `dims:` and the sizes inference found: dynamic B, H, W verified in onnxruntime at several
shapes (a non-square one and the smallest the network takes), nothing fixed silently, and a dim torch
must specialise reported in one line naming dim and node."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import builder
from export import dims as D
from export.onnx_export import describe, export_onnx

DATA = "tests/data"


def onnx_dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def run_both(path, module, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = module(x).numpy()
    return np.abs(sess.run(None, {"x": x.numpy()})[0] - want).max()


def test_unet_exports_with_dynamic_batch_height_and_width(tmp_path):
    spec = builder.load("specs/unet.yaml", width=2)
    module = builder.build(spec).eval()
    result = export_onnx(module, tmp_path / "u.onnx", spec=spec)
    assert result.dynamic == ["B", "H", "W"] and result.fixed == {}
    checked = result.shapes_checked
    assert len(checked) >= 3 and any(s["H"] != s["W"] for s in checked)
    assert {"B": 2, "H": 16, "W": 16} in checked  # the smallest sizes the declarations allow
    assert all(s["H"] % 16 == 0 and s["W"] % 16 == 0 for s in checked)
    model = onnx.load(str(tmp_path / "u.onnx"))
    assert onnx_dims(model.graph.input[0]) == ["B", 1, "H", "W"]
    assert onnx_dims(model.graph.output[0]) == ["B", 2, "H", "W"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["builder.dim_ranges"]) == {"H": [16, None], "W": [16, None]}
    assert "builder.fixed_dims" not in meta
    assert run_both(tmp_path / "u.onnx", module, (1, 1, 48, 112)) < 1e-4  # a shape never verified


@pytest.mark.parametrize("name,low", [("vgg_style", 8), ("densenet_style", 5)])
def test_vgg_and_densenet_style_export_with_dynamic_height_and_width(tmp_path, name, low):
    spec = builder.load(f"{DATA}/{name}.yaml")
    module = builder.build(spec).eval()
    result = export_onnx(module, tmp_path / "m.onnx", spec=spec)
    assert result.dynamic == ["B", "H", "W"] and result.fixed == {}
    assert result.ranges == {"H": (low, float("inf")), "W": (low, float("inf"))}
    assert any(s["H"] != s["W"] for s in result.shapes_checked)
    assert {"B": 2, "H": low, "W": low} in result.shapes_checked
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert onnx_dims(model.graph.input[0]) == ["B", 3, "H", "W"]
    # sizes where adaptive pooling has uneven windows: exact in the file too
    assert run_both(tmp_path / "m.onnx", module, (2, 3, 45, 71)) < 1e-4


def test_dims_left_out_of_dynamic_are_named_with_the_reason(tmp_path):
    spec = builder.load(f"{DATA}/vgg_style.yaml")
    module = builder.build(spec).eval()
    result = export_onnx(module, tmp_path / "m.onnx", spec=spec, dynamic=["B"])
    assert result.dynamic == ["B"] and set(result.fixed) == {"H", "W"}
    size_h = result.fixed["H"][0]
    assert result.fixed["H"] == (size_h, "not in --dynamic")
    assert f"fixed: H={size_h} (not in --dynamic), W=" in describe(result)
    model = onnx.load(str(tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["builder.fixed_dims"])["H"] == {"size": size_h, "why": "not in --dynamic"}
    assert onnx_dims(model.graph.input[0]) == ["B", 3, size_h, result.fixed["W"][0]]


def test_export_dims_follow_declarations():
    r = D.DimRange("H", low=16, high=4096, multiple_of=16, example=224)
    assert [r.fit(v) for v in (1, 17, 224, 5000)] == [16, 32, 224, 4096]
    dim = D.torch_dims({"H": r}, ["H"])["H"]  # a derived dim 16 * Dim(H_over_16) over [1, 256]
    assert (dim.__name__, dim.root.min, dim.root.max, dim.fn(3)) == ("16*H_over_16", 1, 256, 48)
    assert D.narrowed_beyond(r, 32, 4096) is False  # torch's own "a traced symbol is >= 2" on m * s
    assert D.narrowed_beyond(D.DimRange("H", low=8), 32, float("inf")) is True


def test_a_specialising_guard_names_dim_node_and_declaration():
    spec = builder.load(f"{DATA}/vgg_style.yaml")
    module = builder.build(spec)
    from export import signature
    sig = signature.signature_of(module, spec.network().graph)
    # the text torch.export gives when it must specialise a dim (torch 2.13's wording)
    text = ("Constraints violated (W)! For more information, run with TORCH_LOGS=\"+dynamic\".\n"
            "  - Not all values of W = L['x'].size()[3] in the specified range 8 <= W satisfy the generated "
            "guard (L['x'].size()[3] // 8) != 1.\n")
    msg = D.specialisation_message(text, sig, spec.network().graph)
    assert msg == ("dim W cannot stay dynamic: torch specialises it at node 'avgpool' (guard (W // 8) != 1); "
                   "declare `W: {min: 16}` under `dims:`")
