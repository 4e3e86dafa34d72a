"""Series (issue 23): `window:` on CSV/NPY sources, split by time with no window crossing a split, targets in
data units, and predict/evaluate on the raw series."""
from __future__ import annotations

import json

import numpy as np
import pytest

from builder.commands.cli import main
from builder.core.errors import UserError
from builder.data import load_data


def write_series(path, n=300, seed=0):
    """A daily-ish signal around 100 (data units far from 0, so de-standardisation shows)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    temp = 100 + 10 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.5, n)
    path.write_text("step,hour_sin,temp\n" + "\n".join(f"{i},{np.sin(2 * np.pi * i / 24):.5f},{v:.4f}"
                                                       for i, v in zip(t, temp)) + "\n")
    return temp


@pytest.mark.parametrize("lookback, horizon, stride, split", [
    (5, 1, 1, [0.6, 0.2, 0.2]), (7, 3, 2, [0.5, 0.5]), (1, 1, 3, [0.8, 0.1, 0.1]), (10, 4, 1, [0.7, 0.3])])
def test_no_window_crosses_a_split(tmp_path, lookback, horizon, stride, split):
    """The `step` column is the row's position: every val/test window (inputs and targets) lies after every
    training position, and every window's targets follow its inputs directly."""
    write_series(tmp_path / "s.csv", n=120)
    data = load_data({"source": "csv", "path": str(tmp_path / "s.csv"), "target": "step", "drop": ["hour_sin", "temp"],
                      "window": {"lookback": lookback, "horizon": horizon, "stride": stride}, "split": split})
    seen = []
    for ds in (data.train, data.val, data.test):
        if ds is None:
            continue
        x, y = ds.fields[0].numpy()[..., 0], ds.fields[1].numpy().reshape(len(ds), -1)
        assert x.shape[1] == lookback and y.shape[1] == horizon
        np.testing.assert_array_equal(y[:, 0], x[:, -1] + 1)  # the target follows the inputs
        np.testing.assert_array_equal(np.diff(x[:, 0]), stride)
        seen.append((x.min(), max(x.max(), y.max())))
    for (_, hi), (lo, _) in zip(seen, seen[1:]):
        assert hi < lo


SPEC = """spec: 1
name: forecast
inputs:
  x: {shape: [B, 24, 2]}
nodes:
  flat: {op: Flatten}
  hidden: {op: Linear, out_features: 16}
  act: {op: ReLU}
  out: {op: Linear, out_features: 1}
train:
  data: {source: csv, path: PATH, target: temp, drop: [step], window: {lookback: 24, horizon: 1},
         split: [0.7, 0.15, 0.15], standardize: true, standardize_target: true, shuffle: true, batch_size: 32}
  loss: mse
  optimizer: {type: adam, lr: 0.01}
  metrics: [mae]
  epochs: 8
"""


def test_forecaster_trains_exports_and_reads_the_raw_series(tmp_path, capsys):
    temp = write_series(tmp_path / "s.csv")
    spec = tmp_path / "f.yaml"
    spec.write_text(SPEC.replace("PATH", str(tmp_path / "s.csv")))
    assert main(["train", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["export", str(spec), "--run", str(tmp_path / "run"), "-o", str(tmp_path / "m.onnx")]) == 0
    write_series(tmp_path / "new.csv", n=100, seed=3)
    assert main(["predict", str(tmp_path / "m.onnx"), "--input", str(tmp_path / "new.csv"), "-o", str(tmp_path / "p.npy")]) == 0
    pred = np.load(tmp_path / "p.npy")
    assert pred.shape == (100 - 24 + 1, 1) and 85 < pred.min() and pred.max() < 115  # data units
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "new.csv"), "-o", str(tmp_path / "ev")]) == 0
    assert "1 forecast(s) past the end of the series are not scored" in capsys.readouterr().err
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["rows"] == 100 - 24 and metrics["mae"] < 1.5 and metrics["r2"] > 0.9, metrics
    (tmp_path / "no_target.csv").write_text("step,hour_sin\n" + "\n".join(f"{i},0.0" for i in range(30)) + "\n")
    assert main(["predict", str(tmp_path / "m.onnx"), "--input", str(tmp_path / "no_target.csv")]) == 2
    assert "give the series with its target column" in capsys.readouterr().err
    assert len(temp) == 300


NPY_SPEC = """spec: 1
name: forecast_npy
inputs:
  x: {shape: [B, 8]}
nodes:
  out: {op: Linear, out_features: 2}
train:
  data: {source: npy, x: PATH, window: {lookback: 8, horizon: 2, stride: 1}, split: [0.8, 0.2]}
  loss: mse
  epochs: 1
"""


def test_npy_series_forecasts_its_own_next_values(tmp_path, capsys):
    np.save(tmp_path / "s.npy", np.sin(np.arange(200) / 5).astype(np.float32))
    spec = tmp_path / "n.yaml"
    spec.write_text(NPY_SPEC.replace("PATH", str(tmp_path / "s.npy")))
    assert main(["train", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["predict", str(spec), "--run", str(tmp_path / "run"), "--input", str(tmp_path / "s.npy"),
                 "-o", str(tmp_path / "p.npy")]) == 0
    assert np.load(tmp_path / "p.npy").shape == (200 - 8 + 1, 2)


@pytest.mark.parametrize("window, words", [
    ({"lookback": 0}, "train.data.window.lookback: a whole number"),
    ({"lookback": 4, "horizn": 1}, "unknown key(s) ['horizn']"),
    ({"lookback": 400}, "too few for one window"),
])
def test_bad_windows_are_one_line(tmp_path, window, words):
    write_series(tmp_path / "s.csv", n=100)
    with pytest.raises(UserError) as e:
        load_data({"source": "csv", "path": str(tmp_path / "s.csv"), "target": "temp", "window": window})
    assert words in str(e.value)


def test_files_per_split_are_each_windowed(tmp_path):
    write_series(tmp_path / "a.csv", n=60)
    write_series(tmp_path / "b.csv", n=30, seed=1)
    data = load_data({"source": "csv", "target": "temp", "drop": ["step"], "window": {"lookback": 6, "horizon": 2},
                      "files": {"train": str(tmp_path / "a.csv"), "val": str(tmp_path / "b.csv")}})
    assert tuple(data.train.fields[0].shape) == (60 - 6 - 2 + 1, 6, 2) and tuple(data.val.fields[1].shape) == (30 - 7, 2)
