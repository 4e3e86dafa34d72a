"""MLflow tracking of runs (`build train --mlflow [URI]`, `build sweep --mlflow [URI]`): params, the
per-epoch metrics (through the trainer's epoch callback) and the run folder's files as artifacts.

The default store is a local SQLite file, `mlflow.db` in the working directory, with artifacts beside it
in `mlartifacts/`; any tracking URI MLflow takes works (`http://host:5000`, `sqlite:///path.db`).
MLflow is imported only here, and only when asked: `build check` and `build train` without it never pay
its second of start-up. The client API (not mlflow's global "active run") is used, so trial processes
and threads cannot mix up their runs. The UI is `mlflow server --backend-store-uri sqlite:///mlflow.db` from
the full `mlflow` package pinned to mlflow-skinny's version (pyproject): one store schema for both
(tests/test_mlflow_server.py).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from builder.core.errors import UserError

DEFAULT_URI = "sqlite:///mlflow.db"
ARTIFACTS = ("spec.yaml", "resolved.yaml", "metrics.csv", "curves.png", "test.json", "best.pt", "model.onnx")
_MAX_PARAMS = 100  # MLflow's limit per log_batch call


def _client(uri):
    try:
        import mlflow
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UserError("--mlflow needs MLflow (pip install mlflow-skinny; for its UI, mlflow of the same "
                        "version: a different one refuses the store's schema)") from None
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def _experiment_id(client, name, uri):
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # artifacts next to the database, not in the working directory
        location = (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts" / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # another process created it meanwhile
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def flat_params(spec) -> dict:
    """The spec's params and its resolved train section as dotted keys (`train.optimizer.lr`)."""
    out = {}

    def walk(prefix, value):
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif prefix:  # a spec without params has nothing to log at the top (MLflow refuses an empty key)
            out[prefix] = str(value)[:500]

    walk("", dict(spec.params))
    walk("train", dict(spec.train))
    return out


class MlflowRun:
    """One MLflow run: params at the start, a metrics row per epoch, the run folder's files at the end."""

    def __init__(self, uri, *, experiment, run_name, spec=None, parent_run_id=None, tags=None):
        try:
            self.client = _client(uri)
            exp_id = _experiment_id(self.client, experiment, uri)
            tags = dict(tags or {})
            if parent_run_id:
                tags["mlflow.parentRunId"] = parent_run_id
            self.run_id = self.client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
            if spec is not None:
                self._log_params(flat_params(spec))
        except UserError:
            raise
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"--mlflow {uri}: {first}") from None

    def _log_params(self, params):
        from mlflow.entities import Param
        items = [Param(k[:250], v) for k, v in params.items()]
        for i in range(0, len(items), _MAX_PARAMS):
            self.client.log_batch(self.run_id, params=items[i:i + _MAX_PARAMS])

    def epoch_done(self, row):
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(row["epoch"])) for k, v in row.items()
                   if k != "epoch" and isinstance(v, (int, float))]
        self.client.log_batch(self.run_id, metrics=metrics)
        return False

    def chain(self, callback=None):
        """An epoch callback that logs the row, then asks `callback` whether to stop."""
        def both(row):
            self.epoch_done(row)
            return bool(callback(row)) if callback is not None else False
        return both

    def finish(self, run_dir, status="FINISHED"):
        run_dir = Path(run_dir)
        test = run_dir / "test.json"
        if test.is_file():  # the test split's metrics, once, as `test.<name>`
            from builder.text.readers import read_json_file
            values = read_json_file(test, "run file")
            if isinstance(values, dict):
                self.epoch_done({"epoch": 0, **{f"test.{k}": v for k, v in values.items()
                                               if isinstance(v, (int, float)) and not isinstance(v, bool)}})
        for name in ARTIFACTS:
            if (run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run_dir / name))
        self.client.set_tag(self.run_id, "run_folder", str(run_dir.resolve()))
        self.client.set_terminated(self.run_id, status)


def start_parent(uri, spec, run_id=None) -> str:
    """The sweep's own run (trials are nested under it); an existing one is reopened on a rerun."""
    client = _client(uri)
    if run_id is not None:
        try:
            client.update_run(run_id, status="RUNNING")
            return run_id
        except Exception:
            pass  # the tracking store was replaced: start a new parent run
    run = MlflowRun(uri, experiment=spec.name, run_name=f"sweep {spec.name}", spec=None,
                    tags={"sweep": spec.name})
    return run.run_id


def finish_parent(uri, run_id, folder):
    client = _client(uri)
    for name in ("trials.csv", "best.yaml", "history.png", "importances.png", "parallel.png", "slice.png"):
        if (Path(folder) / name).is_file():
            client.log_artifact(run_id, str(Path(folder) / name))
    client.set_terminated(run_id, "FINISHED")

