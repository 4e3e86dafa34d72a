"""Tracked runs for real: `build train --mlflow` into a local SQLite MLflow store (params, per-epoch
metrics, the run folder's files and an exported ONNX file), and `--tensorboard` event files read back
with TensorBoard's own reader (the `tensorboard` extra)."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from builder.commands.cli import main

SPEC = """\
spec: 1
name: tracked
params: {hidden: 12}
inputs:
  x: {shape: [B, 64]}
nodes:
  fc1: {op: Linear, out_features: ${hidden}}
  act: {op: ReLU}
  head: {op: Linear, out_features: 10}
train:
  data: {source: digits, split: [0.8, 0.1, 0.1], batch_size: 128, standardize: true}
  loss: cross_entropy
  optimizer: {type: adam, lr: 0.01}
  epochs: 3
  metrics: [accuracy]
"""


def metrics_csv(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_train_logs_params_metrics_artifacts_and_onnx_to_mlflow(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tracked.yaml").write_text(SPEC)
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    assert main(["train", "tracked.yaml", "--quiet", "--mlflow", uri, "--onnx", "--set", "hidden=20"]) == 0
    from mlflow.tracking import MlflowClient
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["hidden"] == "20" and run.data.params["train.optimizer.type"] == "adam"
    rows = metrics_csv(tmp_path / "runs" / "tracked")
    history = client.get_metric_history(run.info.run_id, "val.accuracy")
    assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in history] == pytest.approx([float(r["val.accuracy"]) for r in rows], abs=1e-6)
    assert 0 < run.data.metrics["test.accuracy"] <= 1
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"best.pt", "spec.yaml", "resolved.yaml", "metrics.csv", "curves.png", "model.onnx"} <= artifacts
    assert (tmp_path / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()  # beside the database

    import onnxruntime as ort
    local = client.download_artifacts(run.info.run_id, "model.onnx", str(tmp_path))
    session = ort.InferenceSession(local, providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": np.zeros((3, 64), np.float32)})[0]
    assert out.shape == (3, 10)


def test_onnx_without_mlflow_is_refused(tmp_path, capsys):
    (tmp_path / "tracked.yaml").write_text(SPEC)
    assert main(["train", str(tmp_path / "tracked.yaml"), "--onnx"]) == 2
    assert "--onnx" in capsys.readouterr().err


def test_tensorboard_event_files_hold_the_metrics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tracked.yaml").write_text(SPEC)
    assert main(["train", "tracked.yaml", "--quiet", "--tensorboard"]) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path / "runs" / "tracked" / "events")).Reload()
    assert {"train.loss", "val.loss", "val.accuracy", "lr"} <= set(events.Tags()["scalars"])
    rows = metrics_csv(tmp_path / "runs" / "tracked")
    for tag in ("train.loss", "val.accuracy"):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2, 3]
        assert [s.value for s in scalars] == pytest.approx([float(r[tag]) for r in rows], rel=1e-6)
