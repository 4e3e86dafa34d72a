"""Issue 20 item 14: the store `build train --mlflow` writes (with mlflow-skinny) opens in the MLflow UI a
user installs: `mlflow server` (the full `mlflow` package of the same pinned version, the test extra) on
127.0.0.1 lists the run through its REST API. The server is started and stopped here, bounded in time."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path

import pytest

from builder.commands.cli import main

SPEC = """\
spec: 1
name: served
inputs:
  x: {shape: [B, 64]}
nodes:
  head: {op: Linear, out_features: 10}
train:
  data: {source: digits, split: [0.8, 0.1, 0.1], batch_size: 256}
  loss: cross_entropy
  epochs: 1
"""
START_S = 90  # the server's start-up on a busy 2-core machine; it answers in seconds on an idle one


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


def test_pinned_mlflow_and_skinny_are_one_version():
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    pins = {}
    for req in project["dependencies"] + project["optional-dependencies"]["test"]:
        name, _, pinned = req.partition("==")
        if name.strip() in ("mlflow", "mlflow-skinny"):
            pins[name.strip()] = pinned.strip()
    assert set(pins) == {"mlflow", "mlflow-skinny"} and len(set(pins.values())) == 1, pins
    assert version("mlflow-skinny") == pins["mlflow-skinny"] and version("mlflow") == pins["mlflow"]


def test_mlflow_server_lists_a_run_that_build_train_wrote(tmp_path, monkeypatch):
    beside = Path(sys.executable).parent / "mlflow"  # this interpreter's own mlflow, before any on PATH
    server = str(beside) if beside.is_file() else shutil.which("mlflow")
    assert server, "the test extra installs mlflow (its `mlflow server`)"
    if version("mlflow") != version("mlflow-skinny"):  # the test extra pins both: a mismatch is the bug
        pytest.fail(f"mlflow {version('mlflow')} vs mlflow-skinny {version('mlflow-skinny')}")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "served.yaml").write_text(SPEC)
    db = tmp_path / "ml.db"
    assert main(["train", "served.yaml", "--quiet", "--mlflow", f"sqlite:///{db}"]) == 0
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job-runner processes
    proc = subprocess.Popen([server, "server", "--backend-store-uri", f"sqlite:///{db}", "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"),
                            start_new_session=True)  # its own process group: stopped whole below
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S
        while True:
            try:
                if _call(f"{base}/health").strip() == "OK":
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not answer in time"
            time.sleep(0.3)
        exp = json.loads(_call(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=served"))
        found = json.loads(_call(f"{base}/api/2.0/mlflow/runs/search",
                                 {"experiment_ids": [exp["experiment"]["experiment_id"]]}))
        (run,) = found["runs"]
        assert run["info"]["status"] == "FINISHED"
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert "val.loss" in metrics and "test.loss" in metrics
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
