"""The Optuna study behind a sweep: its storage (SQLite in the sweep folder, or any URL Optuna takes),
sampler and pruner, the space as Optuna distributions, and which trials count.

A trial counts towards `--trials` once it is finished: complete, pruned, or failed with a reason (NaN,
an error: a result the sampler learns from). A trial whose process was killed is *lost*: it is marked
failed (reason "lost: ...") and does not count, so the next run of the sweep tops the study up. Lost
trials are found two ways: a trial whose owner process on this machine is gone is failed at once; a
trial of another machine is failed by Optuna's heartbeat once its owner stopped beating for GRACE_S.
"""
from __future__ import annotations

import os
import socket
import time
import warnings

from builder.core.errors import UserError

HEARTBEAT_S = 5    # each sweep process records a heartbeat of its running trials this often
GRACE_S = 30       # ... and another process fails a trial whose heartbeat is this old


def optuna():
    """Optuna, imported when a sweep runs (never by `build check`), its log lines silenced: the sweep
    prints its own progress, and the trials' own files say what happened."""
    import optuna as _optuna
    _optuna.logging.set_verbosity(_optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=_optuna.exceptions.ExperimentalWarning)
    # the driver records the heartbeats of the trials it asks for itself (see driver.Pool.heartbeat)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    return _optuna


def open_study(cfg, url: str, name: str, seed_offset: int = 0):
    """The study `name` in `url` (created when new) with the sweep's direction, sampler and pruner."""
    opt = optuna()
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    for attempt in range(5):  # processes creating the same new database race on its tables: look again
        try:
            storage = opt.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S,
                                              grace_period=GRACE_S)
            return opt.create_study(storage=storage, study_name=name, direction=cfg.direction,
                                    load_if_exists=True, sampler=make_sampler(cfg, seed_offset),
                                    pruner=make_pruner(cfg))
        except Exception as e:  # a bad URL, a driver not installed, a server not reachable
            if attempt < 4 and ("UNIQUE constraint" in str(e) or "already exists" in str(e)
                                or "database is locked" in str(e)):
                time.sleep(0.2 * (attempt + 1))
                continue
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"--storage {url}: cannot open the study storage: {first}") from None


def make_sampler(cfg, seed_offset=0):
    opt = optuna()
    seed = None if cfg.seed is None else cfg.seed + seed_offset  # a resumed sweep does not repeat its start
    if cfg.sampler == "random":
        return opt.samplers.RandomSampler(seed=seed)
    if cfg.sampler == "grid":
        return opt.samplers.GridSampler({d.key: d.values() for d in cfg.space}, seed=seed)
    return opt.samplers.TPESampler(seed=seed)


def make_pruner(cfg, epochs=None):
    opt = optuna()
    if cfg.pruner == "median":
        return opt.pruners.MedianPruner()
    if cfg.pruner == "hyperband":
        return opt.pruners.HyperbandPruner(min_resource=1, max_resource=epochs or "auto")
    return opt.pruners.NopPruner()


def distributions(cfg) -> dict:
    """The space as Optuna distributions, keyed by the space's keys (`hidden`, `train.optimizer.lr`)."""
    d = optuna().distributions
    out = {}
    for dim in cfg.space:
        if dim.kind == "choice":
            out[dim.key] = d.CategoricalDistribution(list(dim.choices))
        elif dim.kind == "int":
            out[dim.key] = d.IntDistribution(dim.low, dim.high, log=dim.log, step=dim.step or 1)
        else:
            out[dim.key] = d.FloatDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
    return out


def grid_size(cfg) -> int:
    n = 1
    for dim in cfg.space:
        n *= len(dim.values())
    return n


# ----------------------------------------------------------------------------------------------------
# which trials count


def is_lost(t) -> bool:
    return t.state.name == "FAIL" and (t.user_attrs.get("lost") or "fail_reason" not in t.user_attrs)


def is_done(t) -> bool:
    return t.state.name in ("COMPLETE", "PRUNED") or (t.state.name == "FAIL" and not is_lost(t))


def counts(study):
    """(finished trials that count, trials running now) in the whole study, every process included."""
    trials = study.get_trials(deepcopy=False)
    return sum(map(is_done, trials)), sum(t.state.name in ("RUNNING", "WAITING") for t in trials)


def owner_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_lost(study) -> int:
    """Fail (as lost) the running trials whose owner is gone: on this machine at once (its process no
    longer exists), elsewhere by the heartbeat. Returns how many were found here."""
    opt = optuna()
    opt.storages.fail_stale_trials(study)
    host = socket.gethostname()
    found = 0
    for t in study.get_trials(deepcopy=False, states=(opt.trial.TrialState.RUNNING,)):
        owner_host, _, pid = str(t.user_attrs.get("owner", "")).rpartition(":")
        if owner_host != host or not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        if fail_trial(study, t._trial_id, t.number, f"lost: the sweep process {pid} running it was killed",
                      lost=True):
            found += 1
    return found


def fail_trial(study, trial_id: int, number: int, reason: str, lost: bool = False) -> bool:
    """Mark a running trial failed with its reason; False when another process finished it first."""
    opt = optuna()
    try:
        study._storage.set_trial_user_attr(trial_id, "fail_reason", reason[:2000])
        if lost:
            study._storage.set_trial_user_attr(trial_id, "lost", True)
        study.tell(number, state=opt.trial.TrialState.FAIL)
        return True
    except (opt.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
        return False
