"""`build sweep` for real: Optuna studies in SQLite, trials trained in worker processes, two sweep processes
sharing one storage, a SIGKILLed sweep continued, failed trials recorded with their reason.

Every sweep here is a real `build sweep` process (few trials, one or two epochs of a small MLP on the
digits), so the whole file takes seconds of training and some process start-up.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.commands.cli import main

ROOT = Path(__file__).resolve().parents[1]

TINY = """\
spec: 1
name: tiny
params: {hidden: 8}
inputs:
  x: {shape: [B, 64]}
nodes:
  fc1: {op: Linear, out_features: ${hidden}}
  act: {op: ReLU}
  head: {op: Linear, out_features: 10}
train:
  data: {source: digits, split: [0.8, 0.1, 0.1], batch_size: 128, standardize: true}
  loss: cross_entropy
  optimizer: {type: sgd, lr: 0.1}
  epochs: 1
  metrics: [accuracy]
  checkpoint: {every_seconds: 0}
sweep:
  metric: val.accuracy
  trials: 2
  sampler: %(sampler)s
  space:
    %(space)s
"""


def tiny(tmp_path, sampler="random", space="hidden: {int: [4, 16]}"):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY % {"sampler": sampler, "space": space})
    return path


def build(*args, cwd, check=True, timeout=300, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "builder.commands.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **kw)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def rows(folder):
    with open(folder / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def study_trials(folder, name):
    import optuna
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}").get_trials()


def test_mlp_digits_sweep_runs_resumes_and_leaves_a_trainable_best(tmp_path):
    """The issue's check: specs/mlp_digits.yaml, width x learning rate, 4 trials on 2 jobs, then 6."""
    spec = ROOT / "specs" / "mlp_digits.yaml"
    out = build("sweep", spec, "--trials", 4, "--jobs", 2, "--set", "train.epochs=2", "--quiet", cwd=tmp_path)
    folder = tmp_path / "sweeps" / "mlp_digits"
    assert (folder / "study.db").is_file()
    got = rows(folder)
    assert [r["state"] for r in got] == ["COMPLETE"] * 4
    assert set(got[0]) == {"trial", "hidden", "train.optimizer.lr", "val.accuracy", "state", "duration", "reason"}
    for r in got:
        assert 16 <= int(r["hidden"]) <= 512 and 1e-3 <= float(r["train.optimizer.lr"]) <= 0.5
        assert 0 < float(r["val.accuracy"]) <= 1 and float(r["duration"]) > 0
        run = folder / f"trial-{r['trial']}"  # an ordinary run folder
        assert (run / "best.pt").is_file() and (run / "metrics.csv").is_file()
    owners = {t.user_attrs["worker_pid"] for t in study_trials(folder, "mlp_digits")}
    assert len(owners) == 2  # two worker processes took part
    best = max(got, key=lambda r: float(r["val.accuracy"]))
    assert f"best: trial {best['trial']}" in out.stdout and "val.accuracy" in out.stdout.splitlines()[0]
    assert main(["check", str(folder / "best.yaml")]) == 0
    import builder
    trained = builder.load(folder / "best.yaml")
    assert trained.params["hidden"] == int(best["hidden"]) and trained.sweep is None
    assert trained.train["optimizer"]["lr"] == pytest.approx(float(best["train.optimizer.lr"]))
    assert trained.train["epochs"] == 2
    assert {"history.png", "importances.png", "parallel.png"} <= {p.name for p in folder.glob("*.png")}

    build("sweep", spec, "--trials", 6, "--jobs", 2, "--set", "train.epochs=2", "--quiet", cwd=tmp_path)
    again = rows(folder)
    assert [r["state"] for r in again] == ["COMPLETE"] * 6
    assert again[:4] == got  # the first four trials are kept, not rerun


def test_two_sweep_processes_share_one_storage(tmp_path):
    """The multi-machine mode on one machine: two `build sweep` processes, one SQLite URL, one study."""
    spec = tiny(tmp_path)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "builder.commands.cli", "sweep", str(spec), "--trials", "3",
                               "--storage", url, "--sweep-dir", str(tmp_path / f"machine{i}"), "--quiet"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    import optuna
    trials = optuna.load_study(study_name="tiny", storage=url).get_trials()
    assert 3 <= len(trials) <= 4  # the processes may both start a last trial at the same moment
    assert all(t.state.name == "COMPLETE" for t in trials)
    owners = {t.user_attrs["owner"] for t in trials}
    assert len(owners) == 2, owners  # both processes ran trials of the one study
    folders = {p.name for i in range(2) for p in (tmp_path / f"machine{i}").glob("trial-*")}
    assert folders == {f"trial-{t.number}" for t in trials}  # each trial trained once, where it ran


def test_failed_trial_is_recorded_with_its_reason_and_each_trial_is_an_mlflow_run(tmp_path):
    """lr = 1e30 diverges (NaN): the trial is FAIL with the trainer's reason and the sweep goes on; each
    trial is one MLflow run nested under the sweep's run."""
    spec = tiny(tmp_path, sampler="grid", space="train.optimizer.lr: {choice: [1.0e+30, 0.1]}")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    build("sweep", spec, "--quiet", "--set", "train.optimizer.momentum=0.9", "--mlflow", uri, cwd=tmp_path)
    got = {float(r["train.optimizer.lr"]): r for r in rows(tmp_path / "sweeps" / "tiny")}
    assert got[1e30]["state"] == "FAIL" and "loss is nan" in got[1e30]["reason"].lower()
    assert got[0.1]["state"] == "COMPLETE" and float(got[0.1]["val.accuracy"]) > 0.3

    from mlflow.tracking import MlflowClient
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and "trials.csv" in {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    children = {float(r.data.params["train.optimizer.lr"]): r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert set(children) == {1e30, 0.1}
    assert children[1e30].info.status == "FAILED" and children[0.1].info.status == "FINISHED"
    ok = children[0.1]
    assert ok.data.metrics["val.accuracy"] == pytest.approx(float(got[0.1]["val.accuracy"]), abs=1e-6)
    assert ok.data.params["hidden"] == "8" and ok.data.tags["sweep.trial"] == got[0.1]["trial"]
    assert {"best.pt", "spec.yaml", "metrics.csv"} <= {a.path for a in client.list_artifacts(ok.info.run_id)}


def _running_trial(folder):
    try:
        return [t for t in study_trials(folder, "tiny") if t.state.name == "RUNNING"
                and (folder / f"trial-{t.number}" / "metrics.csv").exists()]
    except Exception:  # the database is being created
        return []


def test_sigkilled_sweep_loses_only_its_running_trial_and_the_rerun_continues(tmp_path):
    spec = tiny(tmp_path)
    folder = tmp_path / "sweeps" / "tiny"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "builder.commands.cli", "sweep", str(spec), "--trials", "1",
                             "--set", "train.epochs=400", "--quiet"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (running := _running_trial(folder)):
        assert proc.poll() is None and time.monotonic() < deadline, "no trial started training"
        time.sleep(0.3)
    worker = running[0].user_attrs["worker_pid"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(100):  # the worker dies with its sweep (PR_SET_PDEATHSIG)
        if not Path(f"/proc/{worker}").exists() or "Z" in Path(f"/proc/{worker}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"worker {worker} outlived its killed sweep")
    build("sweep", spec, "--trials", 1, "--set", "train.epochs=1", "--quiet", cwd=tmp_path)
    got = rows(folder)
    lost = [r for r in got if r["state"] == "LOST"]
    assert len(lost) == 1 and lost[0]["trial"] == str(running[0].number)
    assert "was killed" in lost[0]["reason"]
    assert [r["state"] for r in got] == ["LOST", "COMPLETE"]  # topped up to --trials finished ones


def test_check_reads_the_sweep_section_without_importing_optuna_or_mlflow():
    code = ("import sys, builder.commands.cli\n"
            "assert builder.commands.cli.main(['check', 'specs/mlp_digits.yaml']) == 0\n"
            "import builder\n"
            "assert builder.load('specs/mlp_digits.yaml').sweep.space[0].key == 'hidden'\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'optuna', 'mlflow', 'sqlalchemy', 'alembic'})\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_sweep_section_becomes_a_typed_config():
    import builder
    spec = builder.load(TINY % {"sampler": "grid", "space": "hidden: {int: [4, 16], step: 4}\n"
                                "    train.optimizer.lr: {float: [0.05, 0.2], step: 0.05}\n"
                                "    train.optimizer.type: {choice: [sgd, adam]}"})
    cfg = spec.sweep
    assert (cfg.metric, cfg.direction, cfg.trials, cfg.sampler, cfg.pruner) == \
        ("val.accuracy", "maximize", 2, "grid", "none")
    hidden, lr, kind = cfg.space
    assert hidden.values() == [4, 8, 12, 16] and kind.values() == ["sgd", "adam"]
    assert lr.values() == pytest.approx([0.05, 0.1, 0.15, 0.2])
    assert hidden.source == "22:5"  # where the key was written, for messages
    text = TINY % {"sampler": "tpe", "space": "hidden: {int: [4, 16]}"}
    loss = builder.load(text.replace("metric: val.accuracy", "metric: val.loss")).sweep
    assert loss.direction == "minimize"  # the default follows the metric


def test_median_pruner_stops_trials_below_the_median_after_an_epoch(tmp_path):
    """sweep.pruner: median, one worker (a fixed order): trials after the first five whose epoch-1 value is
    below the median of the earlier trials' epoch-1 values stop there, and trials.csv says PRUNED."""
    path = tmp_path / "tiny.yaml"
    text = (TINY % {"sampler": "random", "space": "train.optimizer.lr: {float: [1.0e-5, 1.0], log: true}"})
    path.write_text(text.replace("epochs: 1", "epochs: 4").replace("trials: 2", "trials: 8")
                    .replace("sampler: random", "sampler: random\n  pruner: median\n  seed: 3"))
    build("sweep", path, "--jobs", 1, "--quiet", cwd=tmp_path)
    folder = tmp_path / "sweeps" / "tiny"
    got = rows(folder)
    first = {}
    for r in got:
        with open(folder / f"trial-{r['trial']}" / "metrics.csv", newline="") as f:
            epochs = list(csv.DictReader(f))
        first[int(r["trial"])] = float(epochs[0]["val.accuracy"])
        assert len(epochs) == (1 if r["state"] == "PRUNED" else 4)
    pruned = [int(r["trial"]) for r in got if r["state"] == "PRUNED"]
    assert pruned and all(t >= 5 for t in pruned)  # the pruner waits for five trials
    for t in pruned:
        earlier = sorted(first[i] for i in range(t))
        assert first[t] < earlier[len(earlier) // 2]
