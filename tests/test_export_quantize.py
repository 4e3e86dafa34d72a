"""`build export --quantize dynamic|static|fp16` and `--triton DIR`: smaller files that keep the trained
model's accuracy on the test split, its metadata, and a Triton config that matches the ONNX file."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import builder
from builder.commands.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPEC = str(ROOT / "specs" / "mlp_digits.yaml")
SET = ["--set", "hidden=32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """mlp_digits trained for 1 epoch (standardises inside the exported graph), its test-split accuracy."""
    from builder.data import load_data
    from builder.training.checkpoint import load as read_checkpoint

    folder = tmp_path_factory.mktemp("quantize")
    run = folder / "run"
    assert main(["train", SPEC, *SET, "--epochs", "1", "--run-dir", str(run), "--quiet", "--device", "cpu"]) == 0
    spec = builder.load(SPEC, hidden=32)
    test = load_data(spec.train["data"]).test
    net = builder.build(spec)
    net.load_state_dict(read_checkpoint(run / "best.pt")["networks"]["model"])
    with torch.no_grad():
        guess = net.eval()(test.fields[0].reshape(len(test), -1)).argmax(1)
    accuracy = float((guess == test.fields[1].reshape(-1)).float().mean() * 100)
    return folder, run, accuracy


def export(trained, mode, capsys, *extra, name=None):
    folder, run, _ = trained
    out = folder / f"{name or mode}.onnx"
    code = main(["export", SPEC, *SET, "--run", str(run), "-o", str(out), "--quantize", mode, *extra])
    captured = capsys.readouterr()
    return code, out, captured.out.strip(), captured.err.strip()


def fp32_size(trained) -> int:
    folder, run, _ = trained
    path = folder / "fp32.onnx"
    if not path.exists():
        assert main(["export", SPEC, *SET, "--run", str(run), "-o", str(path)]) == 0
    return path.stat().st_size


@pytest.mark.parametrize("mode, tolerance", [("static", "0.1"), ("dynamic", "0.1"), ("fp16", "0.01")])
def test_quantised_file_is_smaller_keeps_accuracy_and_metadata(trained, capsys, mode, tolerance):
    code, out, line, _ = export(trained, mode, capsys)
    assert code == 0, line
    accuracy = trained[2]
    got = re.search(r"accuracy ([\d.]+) -> ([\d.]+) on the test split \((\d+) rows", line)
    assert got, line
    before, after = float(got[1]), float(got[2])
    assert before == pytest.approx(accuracy, abs=0.01)  # the fp32 file scores what torch scores
    assert after >= before - 1.0 and int(got[3]) == 179
    assert f"tolerance {tolerance} x max |torch|" in line
    sizes = re.search(r"([\d.]+) MB -> ([\d.]+) MB", line)
    assert out.stat().st_size < fp32_size(trained)
    assert float(sizes[2]) <= float(sizes[1])

    model = onnx.load(str(out))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["builder.precision"] == ("float16" if mode == "fp16" else f"int8 ({mode})")
    assert props["builder.input_preparation"].startswith("inside the model: standardize")
    fp32_size(trained)
    fp32 = {p.key: p.value for p in onnx.load(str(trained[0] / "fp32.onnx")).metadata_props}
    assert {k: v for k, v in props.items() if k.startswith("builder.") and k != "builder.precision"} == \
        {k: v for k, v in fp32.items() if k.startswith("builder.")}  # preparation, inputs, labels, layout
    ops = {n.op_type for n in model.graph.node}
    inits = {i.name: i for i in model.graph.initializer}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # io stays float32
    if mode == "fp16":
        assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in inits.values())
    elif mode == "static":
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        # per-channel weights: one scale per output feature of fc1 (32) and head (10)
        scales = sorted(len(onnx.numpy_helper.to_array(i).reshape(-1)) for n, i in inits.items()
                        if n.endswith("_scale") and onnx.numpy_helper.to_array(i).size > 1)
        assert 32 in scales and 10 in scales
    else:
        assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}


def test_too_large_a_drop_refuses_and_writes_nothing(trained, capsys, monkeypatch):
    """Fault simulation: the quantised file's score comes out 5 points lower; --max-drop 1 refuses."""
    from export import split_data
    real, calls = split_data.metric, []

    def lower_second(outputs, truth):
        name, value = real(outputs, truth)
        calls.append(value)
        return name, value - (5.0 if len(calls) == 2 else 0.0)

    monkeypatch.setattr(split_data, "metric", lower_second)
    code, out, _, err = export(trained, "dynamic", capsys, "--max-drop", "1", name="refused")
    assert code == 2 and not out.exists()
    assert err.splitlines()[-1].startswith("--quantize dynamic: accuracy ")
    assert "more than --max-drop 1; nothing written" in err


def test_quantised_file_straying_from_torch_is_refused(trained, capsys, monkeypatch):
    """A tolerance tighter than int8 can meet: the check against torch names output, error and bound."""
    from export import quantize
    monkeypatch.setitem(quantize.TOLERANCE, "dynamic", 1e-6)
    code, out, _, err = export(trained, "dynamic", capsys, name="strays")
    assert code == 2 and not out.exists()
    assert re.search(r"output 'head' differs from torch by [\d.e-]+ on 179 rows of the test split, beyond the "
                     r"dynamic tolerance 1e-06", err.splitlines()[-1])


def test_static_without_training_data_is_one_line(tmp_path, capsys):
    (tmp_path / "bare.yaml").write_text("spec: 1\nname: bare\ninputs:\n  x: {shape: [B, 4]}\n"
                                        "nodes:\n  fc: {op: Linear, in: x, out_features: 3}\noutputs: [fc]\n")
    code = main(["export", str(tmp_path / "bare.yaml"), "--random", "-o", str(tmp_path / "r.onnx"),
                 "--quantize", "static"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "has no train.data" in err[-1] and not (tmp_path / "r.onnx").exists()


def test_triton_config_matches_the_onnx_file(trained, tmp_path, capsys):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    folder, run, _ = trained
    out = tmp_path / "m.onnx"
    assert main(["export", SPEC, *SET, "--run", str(run), "-o", str(out), "--triton", str(tmp_path / "repo"),
                 "--max-batch", "32"]) == 0
    config_path = tmp_path / "repo" / "mlp_digits" / "config.pbtxt"
    config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    served = tmp_path / "repo" / "mlp_digits" / "1" / "model.onnx"
    assert served.read_bytes() == out.read_bytes()
    model = onnx.load(str(served))
    assert config.name == "mlp_digits" and config.platform == "onnxruntime_onnx" and config.max_batch_size == 32
    assert config.HasField("dynamic_batching")
    types = {onnx.TensorProto.FLOAT: model_config_pb2.TYPE_FP32}
    for declared, actual in ((config.input, model.graph.input), (config.output, model.graph.output)):
        assert [c.name for c in declared] == [v.name for v in actual]
        for c, v in zip(declared, actual):
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
            assert dims[0] == -1 and list(c.dims) == dims[1:]  # the batch dim is Triton's
            assert c.data_type == types[v.type.tensor_type.elem_type]
    assert list(config.input[0].dims) == [64] and list(config.output[0].dims) == [10]


def test_triton_config_without_a_dynamic_batch(tmp_path):
    """A file whose batch is fixed gets max_batch_size 0 and its full dims; int64 inputs map to TYPE_INT64."""
    from export import triton
    spec = builder.load(str(ROOT / "specs" / "mlp_digits.yaml"), hidden=4)
    torch.manual_seed(0)
    from export.onnx_export import export_onnx
    path = tmp_path / "fixed.onnx"
    export_onnx(builder.build(spec), path, spec=spec, dynamic=[])
    text = triton.config_text(onnx.load(str(path)), "fixed")
    assert "max_batch_size: 0" in text and "dynamic_batching" not in text
    assert re.search(r'name: "x" data_type: TYPE_FP32 dims: \[ \d+, 64 \]', text)
    ids = onnx.helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, ["B", "T"])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.INT64, ["B", "T"])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["ids"], ["y"])], "g", [ids], [y])
    text = triton.config_text(onnx.helper.make_model(graph), "ids", max_batch=8)
    assert 'name: "ids" data_type: TYPE_INT64 dims: [ -1 ]' in text and "max_batch_size: 8" in text


def test_fp16_of_a_graph_whose_output_feeds_other_nodes(tmp_path):
    """BERT's last_hidden_state is an output and the pooler's input: the float16 file still loads and agrees."""
    import onnxruntime as ort

    from export import quantize
    h = onnx.helper
    w = onnx.numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32), "w")
    graph = h.make_graph(
        [h.make_node("MatMul", ["x", "w"], ["hidden"]), h.make_node("Tanh", ["hidden"], ["pooled"])], "g",
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["B", 4])],
        [h.make_tensor_value_info("hidden", onnx.TensorProto.FLOAT, ["B", 4]),
         h.make_tensor_value_info("pooled", onnx.TensorProto.FLOAT, ["B", 4])], [w])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 18)]), str(tmp_path / "two.onnx"))
    out = quantize.quantize_file(tmp_path / "two.onnx", tmp_path / "two16.onnx", "fp16")
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    want = ort.InferenceSession(str(tmp_path / "two.onnx")).run(None, {"x": x})
    got = ort.InferenceSession(str(out)).run(None, {"x": x})
    assert [g.dtype for g in got] == [np.float32, np.float32]
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, atol=1e-2 * np.abs(a).max())


def test_a_small_bert_quantises_and_leaves_the_working_folder_clean(tmp_path, monkeypatch):
    """BERT's masks defeat onnxruntime's symbolic shape inference (the int8 path falls back to ONNX's own,
    which saved uuid-named .data files into the current folder before); its output feeds the pooler (fp16)."""
    import onnxruntime as ort

    from export import quantize
    from export.onnx_export import export_onnx
    spec = builder.load(str(ROOT / "specs" / "bert_base.yaml"), hidden=16, layers=1, heads=2, intermediate=32,
                        vocab=50, max_positions=16)
    torch.manual_seed(0)
    export_onnx(builder.build(spec), tmp_path / "bert.onnx", spec=spec, sizes={"T": 8})
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(0, 50, (4, 8)), "token_type_ids": np.zeros((4, 8), np.int64),
            "attention_mask": np.ones((4, 8), np.int64)}
    want = ort.InferenceSession(str(tmp_path / "bert.onnx")).run(None, feed)
    for mode, tolerance in (("dynamic", 0.1), ("fp16", 0.01)):
        out = quantize.quantize_file(tmp_path / "bert.onnx", tmp_path / f"bert.{mode}.onnx", mode)
        got = ort.InferenceSession(str(out)).run(None, feed)
        for a, b in zip(want, got):
            assert np.abs(a - b).max() <= tolerance * np.abs(a).max()
    assert list(work.iterdir()) == []


def test_the_metric_in_points():
    """Accuracy in percent for class scores (per position for a language model), else R2 x 100."""
    from export.split_data import metric
    scores = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [1.0, 0.0]], np.float32)
    assert metric(scores, np.array([0, 1, 1, 0])) == ("accuracy", 75.0)
    assert metric(scores, np.array([[0], [1], [1], [0]])) == ("accuracy", 75.0)  # ids stored as a column
    logits = np.zeros((2, 3, 4), np.float32)
    logits[..., 2] = 1.0
    assert metric(logits, np.array([[2, 2, 0], [2, 1, 2]])) == ("accuracy", pytest.approx(400 / 6))
    truth = np.array([[1.0], [2.0], [3.0], [4.0]])
    assert metric(truth.astype(np.float32), truth) == ("r2x100", 100.0)
    name, value = metric(np.full((4, 1), 2.5, np.float32), truth)
    assert name == "r2x100" and value == pytest.approx(0.0)
