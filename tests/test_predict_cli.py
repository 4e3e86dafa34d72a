"""`build predict`: onnxruntime on an exported file, torch on a spec, the same answers; clear input errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import builder
from builder.commands.cli import main

ROOT = Path(__file__).resolve().parents[1]
LABELS = [f"digit{i}" for i in range(10)]

TWO_INPUTS = """
spec: 1
name: two-inputs
inputs:
  tokens: {shape: [B, T], dtype: int64}
  x: {shape: [B, 4]}
nodes:
  emb: {op: Embedding, in: tokens, num_embeddings: 10, embedding_dim: 4}
  pooled: {op: mean, in: emb, dim: 1}
  both: {op: concat, in: [pooled, x], dim: 1}
  head: {op: Linear, out_features: 3}
outputs: [head]
"""


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A run folder for the digits MLP (random weights, labels in the checkpoint) and its export."""
    folder = tmp_path_factory.mktemp("digits")
    spec = builder.load(ROOT / "specs" / "mlp_digits.yaml", hidden=8)
    torch.manual_seed(0)
    module = builder.build(spec)
    (folder / "run").mkdir()
    torch.save({"model": module.state_dict(), "class_labels": LABELS}, folder / "run" / "best.pt")
    onnx_path = folder / "digits.onnx"
    argv = ["export", str(ROOT / "specs" / "mlp_digits.yaml"), "--set", "hidden=8", "--run", str(folder / "run"),
            "-o", str(onnx_path)]
    assert main(argv) == 0
    x = np.random.default_rng(0).standard_normal((9, 64)).astype(np.float32)
    np.save(folder / "x.npy", x)
    return folder, onnx_path, x


def run_cli(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_labels_from_onnxruntime_and_torch_agree(digits, capsys):
    folder, onnx_path, x = digits
    code, out, err = run_cli(["predict", str(onnx_path), "--input", str(folder / "x.npy"), "--top-k", "2"], capsys)
    assert code == 0 and "CPUExecutionProvider" in err
    rows = out.strip().splitlines()
    assert len(rows) == 9 and rows[0].startswith("0: digit") and rows[0].count("digit") == 2
    spec_argv = ["predict", str(ROOT / "specs" / "mlp_digits.yaml"), "--set", "hidden=8", "--run",
                 str(folder / "run"), "--input", str(folder / "x.npy"), "--top-k", "2", "--provider", "cpu"]
    code, torch_out, err = run_cli(spec_argv, capsys)
    assert code == 0 and "torch on cpu" in err
    assert [r.split(" (")[0] for r in torch_out.strip().splitlines()] == [r.split(" (")[0] for r in rows]


def test_arrays_written_match_and_batching_changes_nothing(digits, tmp_path, capsys):
    folder, onnx_path, x = digits
    outs = {}
    for bs in ("64", "2"):
        path = tmp_path / f"out{bs}.npy"
        assert main(["predict", str(onnx_path), "--input", str(folder / "x.npy"), "--batch-size", bs, "-o", str(path)]) == 0
        outs[bs] = np.load(path)
    np.testing.assert_array_equal(outs["64"], outs["2"])
    direct = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(outs["64"], direct, rtol=1e-6, atol=1e-7)
    # a csv with a header row gives the same answers; -o .csv writes a header, the predicted class and
    # one probability per class (the softmax of the raw outputs)
    csv_in = tmp_path / "x.csv"
    csv_in.write_text(",".join(f"p{i}" for i in range(64)) + "\n"
                      + "\n".join(",".join(repr(float(v)) for v in row) for row in x) + "\n")
    assert main(["predict", str(onnx_path), "--input", str(csv_in), "-o", str(tmp_path / "y.csv")]) == 0
    lines = (tmp_path / "y.csv").read_text().splitlines()
    names = lines[0].split(",")[1:]
    assert lines[0].startswith("prediction,prob_") and len(names) == 10 and len(lines) == 10
    probs = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    softmax = np.exp(direct - direct.max(1, keepdims=True))
    np.testing.assert_allclose(probs, softmax / softmax.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    assert [line.split(",")[0] for line in lines[1:]] == [names[i].removeprefix("prob_") for i in direct.argmax(1)]
    # one sample without its batch axis
    capsys.readouterr()
    np.save(tmp_path / "one.npy", x[0])
    code, out, _ = run_cli(["predict", str(onnx_path), "--input", str(tmp_path / "one.npy")], capsys)
    assert code == 0 and len(out.strip().splitlines()) == 1


def test_bad_inputs_say_what_was_expected(digits, tmp_path, capsys):
    folder, onnx_path, x = digits
    np.save(tmp_path / "u8.npy", (x * 10).astype(np.uint8))
    np.save(tmp_path / "wide.npy", np.zeros((3, 65), np.float32))
    (tmp_path / "x.txt").write_text("1,2\n")
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    (tmp_path / "words.csv").write_text("1,2\n3,oops\n")
    np.savez(tmp_path / "two.npz", a=x, b=x)
    cases = [
        ("u8.npy", "expects float32, got uint8"),
        ("wide.npy", "'x' float32 [B, 64] got an array of shape [3, 65]"),
        ("x.txt", "expected a .npy, .npz or .csv file"),
        ("broken.npy", "not a readable .npy array"),
        ("words.csv", "words.csv:2: 'oops' is not a number"),
        ("two.npz", "no array for input(s) x"),
        ("missing.npy", "no such input file"),
    ]
    for name, words in cases:
        code, out, err = run_cli(["predict", str(onnx_path), "--input", str(tmp_path / name)], capsys)
        assert code == 2, name
        assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    code, _, err = run_cli(["predict", str(onnx_path), "--input", str(folder / "x.npy"), "-o", str(tmp_path / "o.txt")], capsys)
    assert code == 2 and "-o" in err and not (tmp_path / "o.txt").exists()


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="a GPU build is installed")
def test_cuda_provider_without_a_gpu_is_a_clear_error(digits, capsys):
    folder, onnx_path, _ = digits
    code, _, err = run_cli(["predict", str(onnx_path), "--input", str(folder / "x.npy"), "--provider", "cuda"], capsys)
    assert code == 2 and "onnxruntime-gpu" in err and "--provider cpu" in err


def test_two_inputs_from_npz_with_token_range_checked(tmp_path, capsys):
    spec = tmp_path / "two.yaml"
    spec.write_text(TWO_INPUTS)
    model = tmp_path / "two.onnx"
    assert main(["export", str(spec), "--random", "-o", str(model)]) == 0
    rng = np.random.default_rng(1)
    tokens, x = rng.integers(0, 10, (5, 13)), rng.standard_normal((5, 4)).astype(np.float32)
    np.savez(tmp_path / "in.npz", tokens=tokens, x=x)
    assert main(["predict", str(model), "--input", str(tmp_path / "in.npz"), "-o", str(tmp_path / "o.npz")]) == 0
    with np.load(tmp_path / "o.npz") as out:
        assert out["head"].shape == (5, 3)
    np.savez(tmp_path / "bad.npz", tokens=tokens + 5, x=x)
    code, _, err = run_cli(["predict", str(model), "--input", str(tmp_path / "bad.npz")], capsys)
    assert code == 2 and "'tokens' has values in [5, 14], the model takes [0, 10)" in err
    np.save(tmp_path / "one.npy", x)
    code, _, err = run_cli(["predict", str(model), "--input", str(tmp_path / "one.npy")], capsys)
    assert code == 2 and "use an .npz with one array per input name" in err


def test_trained_run_exports_and_predicts_like_torch(tmp_path, capsys):
    """The real trainer's run folder (one epoch) -> build export --run -> build predict, onnx and torch."""
    spec = str(ROOT / "specs" / "mlp_digits.yaml")
    run = tmp_path / "run"
    assert main(["train", spec, "--set", "hidden=8", "--epochs", "1", "--run-dir", str(run), "--quiet",
                 "--device", "cpu"]) == 0
    model = tmp_path / "m.onnx"
    assert main(["export", spec, "--set", "hidden=8", "--run", str(run), "-o", str(model)]) == 0
    x = np.random.default_rng(2).standard_normal((4, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["predict", str(model), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "a.npy")]) == 0
    assert main(["predict", spec, "--set", "hidden=8", "--run", str(run), "--input", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "b.npy"), "--provider", "cpu"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"), rtol=1e-4, atol=1e-5)


def test_export_records_the_training_input_preparation_and_predict_says_so(tmp_path, capsys):
    """The exported graph starts at the network's input; mlp_digits standardises its inputs in the data
    pipeline, so the file says so and `build predict` reminds whoever feeds it."""
    import onnx
    from builder.commands.cli import main as cli
    out = tmp_path / "digits.onnx"
    assert cli(["export", "specs/mlp_digits.yaml", "--random", "-o", str(out)]) == 0
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["builder.input_preparation"] == "standardize (mean/std of the training split)"
    np.save(tmp_path / "x.npy", np.zeros((2, 64), np.float32))
    capsys.readouterr()
    assert cli(["predict", str(out), "--input", str(tmp_path / "x.npy")]) == 0
    assert "prepared by: standardize" in capsys.readouterr().err
    assert cli(["export", "specs/xor_mlp.yaml", "--random", "-o", str(tmp_path / "xor.onnx")]) == 0
    assert "builder.input_preparation" not in {p.key for p in onnx.load(str(tmp_path / "xor.onnx")).metadata_props}


def test_a_trained_standardising_model_exports_with_its_statistics_and_takes_raw_inputs(tmp_path, capsys):
    """mlp_digits trains on standardised pixels; the checkpoint carries the training statistics, and the
    exported model (and predict --run in torch) standardise by themselves, so raw pixels give the answers
    the trained network gives on the prepared test split."""
    import onnx
    from builder.commands.cli import main as cli
    from builder.data import load_data
    from builder.training.checkpoint import load as read_checkpoint

    run = tmp_path / "run"
    assert cli(["train", "specs/mlp_digits.yaml", "--run-dir", str(run), "--epochs", "2", "--quiet"]) == 0
    stats = read_checkpoint(run / "best.pt")["input_preparation"]["x"]
    assert tuple(stats["mean"].shape) == (64,) and float(stats["std"].min()) > 0
    out = tmp_path / "digits.onnx"
    assert cli(["export", "specs/mlp_digits.yaml", "--run", str(run), "-o", str(out)]) == 0
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["builder.input_preparation"].startswith("inside the model: standardize")

    spec = builder.load("specs/mlp_digits.yaml")
    test = load_data(spec.train["data"]).test
    prepared = test.fields[0].reshape(len(test), -1)[:16]
    raw = prepared * stats["std"] + stats["mean"]
    assert float(raw.min()) > -1e-3 and float(raw.max()) < 16 + 1e-3  # digits' pixels are 0..16
    trained = builder.build(spec)
    trained.load_state_dict(read_checkpoint(run / "best.pt")["networks"]["model"])
    expected = trained.eval()(prepared).argmax(1).numpy()
    np.save(tmp_path / "raw.npy", raw.numpy())
    capsys.readouterr()
    for source in ([str(out)], ["specs/mlp_digits.yaml", "--run", str(run)]):
        assert cli(["predict", *source, "--input", str(tmp_path / "raw.npy"), "-o", str(tmp_path / "y.npy")]) == 0
        assert "feed inputs prepared the same way" not in capsys.readouterr().err
        np.testing.assert_array_equal(np.load(tmp_path / "y.npy").argmax(1), expected)
