"""A sweep's worker process: trains the trials the driver hands it, one at a time, each into its run
folder `trial-<n>/` through `builder.train`, and tells the study how it went.

The driver starts it as `python -m builder.sweep.worker`, sends one JSON line with the sweep's settings,
then one JSON line per trial ({"trial_id", "number"}); the worker answers each with one JSON line on its
original stdout (everything else it prints goes to stderr, the sweep's log). A worker lives as long as its
driver: Linux kills it with the driver (PR_SET_PDEATHSIG), so a SIGKILLed sweep leaves no trial running.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
import traceback
from pathlib import Path


def die_with_parent():
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


def metric_value(metric: str, direction: str, history: list, run_dir: Path):
    """The trial's value: the best per-epoch value of the metric (as early stopping keeps the best
    weights), or the test split's value for a `test.*` metric."""
    if metric.startswith("test."):
        test = run_dir / "test.json"
        from builder.text.readers import read_json_file
        record = read_json_file(test, "run file") if test.exists() else None
        value = record.get(metric[5:]) if isinstance(record, dict) else None
        return value if isinstance(value, (int, float)) and math.isfinite(value) else None
    values = [row[metric] for row in history if isinstance(row.get(metric), (int, float))
              and math.isfinite(row[metric])]
    if not values:
        return None
    return max(values) if direction == "maximize" else min(values)


def run_trial(ctx, study, cfg, trial_id: int, number: int) -> dict:
    """Train one trial and tell the study its value, PRUNED, or FAIL with the reason."""
    import builder
    from builder.data.sizes import load_sized
    from builder.core.errors import UserError
    from builder.training.book import TrainingInterrupted
    from builder.sweep.study import fail_trial, optuna

    opt = optuna()
    trial = opt.trial.Trial(study, trial_id)
    trial.set_user_attr("worker_pid", os.getpid())
    params = study._storage.get_trial(trial_id).params
    run_dir = Path(ctx["sweep_dir"]) / f"trial-{number}"
    pruned = False

    def report(row):
        nonlocal pruned
        if cfg.pruner == "none":  # each report is a database write: only for a pruner to read
            return False
        value = row.get(cfg.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            trial.report(float(value), int(row["epoch"]))
            if trial.should_prune():
                pruned = True
                return True
        return False

    tracker = None
    t0 = time.perf_counter()
    try:
        spec = load_sized(ctx["spec"], {**ctx["sets"], **params}, safe=ctx["safe"])  # as build train loads
        callback = report
        if ctx.get("mlflow"):
            from builder.training.tracking import MlflowRun
            tracker = MlflowRun(ctx["mlflow"], experiment=ctx["study"], run_name=f"trial-{number}",
                                parent_run_id=ctx.get("mlflow_parent"), spec=spec,
                                tags={"sweep.trial": str(number)})
            callback = tracker.chain(report)
        _, history, _ = builder.train(spec, run_dir=run_dir, quiet=True, callback=callback,
                                      tensorboard=ctx["tensorboard"])
        value = metric_value(cfg.metric, cfg.direction, history, run_dir)
        if tracker:
            tracker.finish(run_dir, "FINISHED")
        if pruned:
            study.tell(number, state=opt.trial.TrialState.PRUNED)
            state = "PRUNED"
        elif value is None:
            fail_trial(study, trial_id, number, f"the run recorded no finite {cfg.metric}")
            state = "FAIL"
        else:
            study.tell(number, float(value))
            state = "COMPLETE"
    except TrainingInterrupted as e:  # Ctrl-C or SIGTERM: the trial is lost, not a result
        _finish_tracker(tracker, run_dir)
        fail_trial(study, trial_id, number, f"lost: interrupted ({e})", lost=True)
        raise
    except UserError as e:  # NaN loss, a value the trainer refuses, ...
        _finish_tracker(tracker, run_dir)
        fail_trial(study, trial_id, number, str(e).splitlines()[0] if str(e) else type(e).__name__)
        state = "FAIL"
    except Exception as e:  # a bug or a crash inside torch: recorded, and the sweep goes on
        traceback.print_exc()
        _finish_tracker(tracker, run_dir)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        fail_trial(study, trial_id, number, f"{type(e).__name__}: {first}")
        state = "FAIL"
    return {"number": number, "state": state, "seconds": time.perf_counter() - t0}


def _finish_tracker(tracker, run_dir):
    if tracker is not None:
        try:
            tracker.finish(run_dir, "FAILED")
        except Exception:
            traceback.print_exc()


def main():
    die_with_parent()
    answers = os.fdopen(os.dup(1), "w", buffering=1)  # the protocol; all other output goes to stderr
    os.dup2(2, 1)
    ctx = json.loads(sys.stdin.readline())
    if ctx.get("ppid") and os.getppid() != ctx["ppid"]:
        return 1  # the driver died before PR_SET_PDEATHSIG was in place
    import torch
    torch.set_num_threads(int(ctx["threads"]))

    from builder.data.sizes import load_sized
    from builder.sweep.study import open_study

    spec = load_sized(ctx["spec"], ctx["sets"], safe=ctx["safe"])
    study = open_study(spec.sweep, ctx["storage"], ctx["study"])
    answers.write(json.dumps({"ready": True}) + "\n")
    try:
        for line in sys.stdin:
            job = json.loads(line)
            answers.write(json.dumps(run_trial(ctx, study, spec.sweep, job["trial_id"], job["number"])) + "\n")
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the driver stops too
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
