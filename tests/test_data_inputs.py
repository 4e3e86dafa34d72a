"""Several inputs by name, one naming rule for train, predict and evaluate (issue 23; issue 20 items 10, 11):
npz arrays and CSV column groups feed the spec's inputs by name; 24 lag columns train as [B, 24, 1] and
predict/evaluate read the same CSV the same way; an npz array `x` feeds an input `tokens` everywhere."""
from __future__ import annotations

import json

import numpy as np
import pytest

import builder
from builder.commands.cli import main

TWO = """spec: 1
name: two
inputs:
  x: {shape: [B, 3]}
  adj: {shape: [B, 2]}
nodes:
  a: {op: Linear, in: x, out_features: 8}
  b: {op: Linear, in: adj, out_features: 8}
  s: {op: add, in: [a, b]}
  r: {op: ReLU}
  out: {op: Linear, out_features: 1}
train:
  data: DATA
  loss: mse
  optimizer: {type: adam, lr: 0.05}
  epochs: 15
"""


def two_inputs(n=240, seed=0):
    """y = sum(x) - 2 * adj_0 + adj_1: both inputs are needed to fit it."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    adj = rng.standard_normal((n, 2)).astype(np.float32)
    y = (x.sum(1) - 2 * adj[:, 0] + adj[:, 1]).astype(np.float32).reshape(-1, 1)
    return x, adj, y


def write_spec(tmp_path, data):
    path = tmp_path / "two.yaml"
    path.write_text(TWO.replace("DATA", json.dumps(data)))
    return path


def test_npz_arrays_feed_inputs_by_name_in_train_predict_and_evaluate(tmp_path, capsys):
    x, adj, y = two_inputs()
    np.savez(tmp_path / "d.npz", adj=adj, x=x, y=y)  # stored in another order than the spec's
    spec = write_spec(tmp_path, {"source": "npz", "path": str(tmp_path / "d.npz"), "batch_size": 32})
    model, history, run = builder.train(spec, run_dir=tmp_path / "run", quiet=True)
    assert history[-1]["val.loss"] < 0.1 * float(y.var())
    assert main(["export", str(spec), "--run", str(run), "-o", str(tmp_path / "m.onnx")]) == 0
    x2, adj2, y2 = two_inputs(40, seed=1)
    np.savez(tmp_path / "t.npz", x=x2, adj=adj2, y=y2)
    for source in ([str(tmp_path / "m.onnx")], [str(spec), "--run", str(run)]):
        assert main(["evaluate", *source, "--data", str(tmp_path / "t.npz"), "-o", str(tmp_path / "ev")]) == 0
        metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
        assert metrics["r2"] > 0.9, metrics
    assert main(["predict", str(tmp_path / "m.onnx"), "--input", str(tmp_path / "t.npz"), "-o", str(tmp_path / "p.npy")]) == 0
    expected = model(*(__import__("torch").from_numpy(a) for a in (x2, adj2))).detach().numpy()
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, rtol=1e-4, atol=1e-4)


def test_csv_column_groups_feed_inputs_by_name(tmp_path, capsys):
    x, adj, y = two_inputs()
    header = "a0,a1,f0,f1,f2,target"
    rows = np.concatenate([adj, x, y], axis=1)
    text = header + "\n" + "\n".join(",".join(f"{v:.6f}" for v in r) for r in rows) + "\n"
    (tmp_path / "d.csv").write_text(text)
    data = {"source": "csv", "path": str(tmp_path / "d.csv"), "target": "target",
            "inputs": {"adj": ["a0", "a1"], "x": ["f*"]}, "batch_size": 32, "standardize": True}
    spec = write_spec(tmp_path, data)
    _, history, run = builder.train(spec, run_dir=tmp_path / "run", quiet=True)
    assert history[-1]["val.loss"] < 0.1 * float(y.var())
    assert main(["export", str(spec), "--run", str(run), "-o", str(tmp_path / "m.onnx")]) == 0
    assert main(["evaluate", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "d.csv"), "-o", str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["r2"] > 0.9
    props = {p.key: p.value for p in __import__("onnx").load(str(tmp_path / "m.onnx")).metadata_props}
    assert props["builder.input_preparation"].startswith("inside the model: standardize")  # both inputs' own stats
    data["inputs"] = {"x": ["f*"], "adj": ["nope"]}
    bad = write_spec(tmp_path, data)
    capsys.readouterr()
    assert main(["train", str(bad), "--run-dir", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "inputs.adj: " in err and "has no column 'nope'" in err and len(err.strip().splitlines()) == 1


def test_missing_named_input_is_one_line(tmp_path, capsys):
    x, adj, y = two_inputs(40)
    np.savez(tmp_path / "d.npz", x=x, other=adj, y=y)
    spec = write_spec(tmp_path, {"source": "npz", "path": str(tmp_path / "d.npz")})
    capsys.readouterr()
    assert main(["train", str(spec), "--run-dir", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no array for input(s) adj" in err and len(err.strip().splitlines()) == 1


LAGS = """spec: 1
name: lags
inputs:
  x: {shape: [B, 24, 1]}
nodes:
  flat: {op: Flatten}
  out: {op: Linear, out_features: 1}
train:
  data: {source: csv, path: PATH, target: y, batch_size: 32}
  loss: mse
  epochs: 2
"""


def test_lag_columns_viewed_as_a_sequence_in_predict_and_evaluate(tmp_path, capsys):
    """Issue 20 item 10: training views 24 lag columns as [B, 24, 1]; predict and evaluate take the same CSV."""
    rng = np.random.default_rng(0)
    lags = rng.standard_normal((64, 24)).astype(np.float32)
    y = lags.mean(1, keepdims=True)
    table = np.concatenate([lags, y], 1)
    (tmp_path / "lags.csv").write_text(",".join([f"lag{i}" for i in range(24)] + ["y"]) + "\n"
                                       + "\n".join(",".join(f"{v:.5f}" for v in r) for r in table) + "\n")
    spec = tmp_path / "lags.yaml"
    spec.write_text(LAGS.replace("PATH", str(tmp_path / "lags.csv")))
    assert main(["train", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["export", str(spec), "--run", str(tmp_path / "run"), "-o", str(tmp_path / "m.onnx")]) == 0
    for source in ([str(tmp_path / "m.onnx")], [str(spec), "--run", str(tmp_path / "run")]):
        assert main(["predict", *source, "--input", str(tmp_path / "lags.csv"), "-o", str(tmp_path / "p.npy")]) == 0
        assert np.load(tmp_path / "p.npy").shape == (64, 1)
        assert main(["evaluate", *source, "--data", str(tmp_path / "lags.csv"), "-o", str(tmp_path / "ev")]) == 0
        assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["rows"] == 64


TOKENS = """spec: 1
name: tok
inputs:
  tokens: {shape: [B, 6], dtype: int64, range: [0, 5]}
nodes:
  emb: {op: Embedding, num_embeddings: 5, embedding_dim: 4}
  pooled: {op: mean, dim: 1}
  out: {op: Linear, out_features: 3}
train:
  data: {source: npz, path: PATH}
  loss: cross_entropy
  epochs: 1
"""


def test_evaluate_finds_the_array_training_read(tmp_path, capsys):
    """Issue 20 item 11: training read the npz array `x` for the input `tokens`; evaluate (and predict) on an
    npz with `x`, `y` and `classes` read the same array."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, (60, 6))
    y = (x.sum(1) % 3).astype(np.int64)
    np.savez(tmp_path / "d.npz", x=x, y=y, classes=np.array(["a", "b", "c"]))
    spec = tmp_path / "tok.yaml"
    spec.write_text(TOKENS.replace("PATH", str(tmp_path / "d.npz")))
    assert main(["train", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["export", str(spec), "--run", str(tmp_path / "run"), "-o", str(tmp_path / "m.onnx")]) == 0
    for source in ([str(tmp_path / "m.onnx")], [str(spec), "--run", str(tmp_path / "run")]):
        assert main(["evaluate", *source, "--data", str(tmp_path / "d.npz"), "-o", str(tmp_path / "ev")]) == 0
        assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["rows"] == 60
        assert main(["predict", *source, "--input", str(tmp_path / "d.npz"), "-o", str(tmp_path / "p.csv")]) == 0
        assert (tmp_path / "p.csv").read_text().splitlines()[0] == "prediction,prob_a,prob_b,prob_c"


@pytest.mark.parametrize("data, spec, expected", [
    (["x", "adj"], ["adj", "x"], [1, 0]),
    ([None], ["tokens"], [0]),
    (["review", "review_mask"], ["review_mask", "review"], [1, 0]),
    (["review", "review_mask"], ["tokens"], [0]),
    ([None, None], ["a", "b"], [0, 1]),
])
def test_naming_rule(data, spec, expected):
    from builder.data.naming import match_inputs
    assert match_inputs(data, spec) == expected


@pytest.mark.parametrize("data, spec", [(["x", "adj"], ["feat"]), (["x", "adj"], ["x", "edges"]), ([None], ["a", "b"])])
def test_naming_rule_refuses_a_guess(data, spec):
    from builder.core.errors import UserError
    from builder.data.naming import match_inputs
    with pytest.raises(UserError, match="the network takes inputs"):
        match_inputs(data, spec)
