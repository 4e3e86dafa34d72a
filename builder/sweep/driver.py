"""Running a sweep: keep `jobs` worker processes busy with the study's trials until it has `trials`
finished ones, then write the results.

The driver asks the study for each trial (the sampler lives here, so parallel trials see each other as
running) and hands it to a free worker; it records a heartbeat for its running trials and owns them (the
`owner` attr: host:pid), so a rerun after a SIGKILL fails exactly those as lost and goes on. Several
drivers (processes or machines) on one storage share the study: each starts trials while the study has
fewer than `trials` finished or running ones.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from builder.core.errors import UserError
from builder.sweep import results
from builder.sweep.study import (HEARTBEAT_S, counts, distributions, fail_trial, grid_size, open_study, owner_tag, reap_lost)

POLL_S = 1.0  # how often an idle driver looks again while other processes' trials run


SWEEP_MARKERS = ("study.db", "sweep.log", "trials.csv", "trial-*")  # what makes a folder a sweep of ours


def run_sweep(spec_path, *, trials=None, jobs=1, sweep_dir=None, storage=None, sets=None, safe=False,
              mlflow=None, tensorboard=False, quiet=False, out=None, overwrite=False):
    """Run (or continue) the sweep of a spec; returns the study. See `build sweep --help`."""
    from builder.data.sizes import load_sized

    out = out or sys.stdout
    sets = dict(sets or {})
    spec = load_sized(spec_path, sets, safe=safe)  # as build train loads (sizes from the data)
    cfg = spec.sweep
    if cfg is None:
        raise UserError(f"{spec_path}: the spec has no sweep: section (metric, space, ...) to search")
    if jobs < 1:
        raise UserError(f"--jobs must be 1 or more, got {jobs}")
    folder = Path(sweep_dir) if sweep_dir else Path("sweeps") / spec.name
    if not overwrite:  # the user's own files in a folder that holds no sweep are never replaced
        from builder.training.runlog import refuse_foreign
        refuse_foreign(folder, SWEEP_MARKERS, "--sweep-dir")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--sweep-dir {folder}: cannot create it: {e.strerror or e}") from None
    url = storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    target = trials or cfg.trials
    if cfg.sampler == "grid" and target > grid_size(cfg):
        print(f"the grid has {grid_size(cfg)} points: running {grid_size(cfg)} trials, not {target}", file=out)
        target = grid_size(cfg)

    probe = open_study(cfg, url, spec.name)
    check_same_sweep(probe, cfg, folder, url)
    reap_lost(probe)
    study = open_study(cfg, url, spec.name, seed_offset=len(probe.get_trials(deepcopy=False)))
    parent_run = _mlflow_parent(study, mlflow, spec) if mlflow else None
    done, running = counts(study)
    if done >= target:
        print(f"{spec.name}: the study already has {done} finished trials (--trials {target})", file=out)
    else:
        ctx = {"spec": str(spec_path), "sets": sets, "safe": safe, "storage": url, "study": spec.name,
               "sweep_dir": str(folder.resolve()), "tensorboard": tensorboard, "mlflow": mlflow,
               "mlflow_parent": parent_run, "ppid": os.getpid(),
               "threads": max(1, (os.cpu_count() or 1) // jobs)}
        Pool(study, cfg, ctx, target, jobs, folder, quiet, out).run()
    results.write_all(study, cfg, spec, spec_path, sets, folder, out=out)
    if parent_run:
        from builder.training.tracking import finish_parent
        finish_parent(mlflow, parent_run, folder)
    return study


def check_same_sweep(study, cfg, folder, url):
    """A study is continued only by the same sweep (metric, direction, space); a new study starts in a
    folder without trial folders of another one."""
    seen = study.user_attrs.get("sweep")
    if seen is None:
        if not study.get_trials(deepcopy=False) and any(folder.glob("trial-*")):
            raise UserError(f"{folder} holds trial folders of another study; choose another --sweep-dir "
                            "or remove them")
        study.set_user_attr("sweep", cfg.fingerprint())
    elif seen != cfg.fingerprint():
        raise UserError(f"the study in {url} was run with another sweep section (metric, direction or space); "
                        "choose another --sweep-dir or --storage, or remove the old study")


def _mlflow_parent(study, uri, spec):
    """One MLflow run for the sweep (kept across reruns in the study); trials are nested under it."""
    from builder.training.tracking import start_parent
    run_id = study.user_attrs.get("mlflow_parent")
    run_id = start_parent(uri, spec, run_id)
    study.set_user_attr("mlflow_parent", run_id)
    return run_id


class Pool:
    """`jobs` worker processes, each fed by one thread of this process; one lock around the study."""

    def __init__(self, study, cfg, ctx, target, jobs, folder, quiet, out):
        self.study, self.cfg, self.ctx, self.target, self.jobs = study, cfg, ctx, target, jobs
        self.folder, self.out = folder, out
        self.lock = threading.Lock()
        self.running = {}          # trial id -> trial number, of this driver
        self.stop = threading.Event()
        self.error = None
        self.distributions = distributions(cfg)
        done, _ = counts(study)
        self.bar = None if quiet else Progress(target, done, cfg.metric)

    def run(self):
        threads = [threading.Thread(target=self.feed, args=(slot,), daemon=True) for slot in range(self.jobs)]
        beat = threading.Thread(target=self.heartbeat, daemon=True)
        previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops like Ctrl-C
        try:
            for t in threads + [beat]:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            self.stop.set()
            for w in list(Worker.alive):
                w.interrupt()
            for t in threads:
                t.join(30)
            raise
        finally:
            self.stop.set()
            signal.signal(signal.SIGTERM, previous)
            if self.bar is not None:
                self.bar.close()
        if self.error is not None:
            raise self.error

    def feed(self, slot):
        worker = None
        try:
            while not self.stop.is_set():
                if worker is None and self.more_needed():  # started first: a trial's time is its training
                    worker = Worker(self.ctx, self.folder)
                claim = self.claim()
                if claim is None:
                    return
                if claim == "wait":
                    time.sleep(POLL_S)
                    continue
                trial_id, number = claim
                if worker is None:
                    worker = Worker(self.ctx, self.folder)
                answer = worker.run(trial_id, number)
                if answer is None:  # the worker died: its trial failed with the reason, a new worker next time
                    why = worker.why_dead()
                    worker = None
                    with self.lock:
                        fail_trial(self.study, trial_id, number, f"the trial's process died ({why})",
                                   lost=self.stop.is_set())
                with self.lock:
                    self.running.pop(trial_id, None)
                    self.progress()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self.error = self.error or e
            self.stop.set()
        finally:
            if worker is not None:
                worker.close()

    def more_needed(self) -> bool:
        with self.lock:
            done, running = counts(self.study)
            return done + running < self.target

    def claim(self):
        """The next trial for this driver (id, number), "wait" while others' trials may still make up
        the target, or None when the study has enough."""
        with self.lock:
            reap_lost(self.study)
            done, running = counts(self.study)
            if done >= self.target:
                return None
            if done + running >= self.target:
                return "wait" if running > len(self.running) else None  # others' trials may be lost
            trial = self.study.ask(self.distributions)
            trial.set_user_attr("owner", owner_tag())
            self.study._storage.record_heartbeat(trial._trial_id)
            self.running[trial._trial_id] = trial.number
            return trial._trial_id, trial.number

    def heartbeat(self):
        """Record the heartbeat of this driver's running trials (other drivers fail them when it stops)."""
        while not self.stop.wait(HEARTBEAT_S):
            with self.lock:
                for trial_id in list(self.running):
                    with contextlib.suppress(Exception):
                        self.study._storage.record_heartbeat(trial_id)

    def progress(self):
        if self.bar is None:
            return
        done, _ = counts(self.study)
        try:
            best = self.study.best_trial
            self.bar.update(done, (best.value, best.number))
        except ValueError:  # no trial finished well yet
            self.bar.update(done, None)


class Worker:
    """One worker process (builder.sweep.worker) and its two pipes."""

    alive: set = set()

    def __init__(self, ctx, folder):
        try:  # appended to: a symbolic link planted in its place is refused, never followed
            self.log = os.fdopen(os.open(folder / "sweep.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT |
                                         getattr(os, "O_NOFOLLOW", 0), 0o644), "ab")
        except OSError as e:
            raise UserError(f"cannot write {folder / 'sweep.log'}: {e.strerror or e}") from None
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen([sys.executable, "-m", "builder.sweep.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=env, text=True, bufsize=1)
        Worker.alive.add(self)
        self.proc.stdin.write(json.dumps(ctx) + "\n")
        self.ready = self._answer()

    def _answer(self):
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None

    def run(self, trial_id, number):
        if self.ready is None:
            return None
        try:
            self.proc.stdin.write(json.dumps({"trial_id": trial_id, "number": number}) + "\n")
        except BrokenPipeError:
            return None
        return self._answer()

    def why_dead(self) -> str:
        try:
            code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}; see {Path(self.log.name)}"

    def interrupt(self):
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)

    def close(self):
        Worker.alive.discard(self)
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class Progress:
    """Trials done and the best so far: a tqdm bar on a terminal; off one (a file, a pipe) one plain line
    each time a trial ends, as `build train` prints epoch lines (no carriage-return bar in a log)."""

    def __init__(self, total, initial, metric, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.metric, self.shown = total, metric, initial
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="trial", desc="sweep", file=self.stream,
                            dynamic_ncols=True)

    def update(self, done, best):
        """done: trials finished; best: (value, trial number) or None."""
        done = min(done, self.total)
        text = f"best {self.metric} {best[0]:.4g} (trial {best[1]})" if best else ""
        if self.bar is not None:
            self.bar.n = done
            if text:
                self.bar.set_postfix_str(text, refresh=False)
            self.bar.refresh()
        elif done != self.shown:
            self.shown = done
            print(f"sweep: {done}/{self.total} trials done" + (f"; {text}" if text else ""), file=self.stream,
                  flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
