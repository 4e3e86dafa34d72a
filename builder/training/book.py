"""The run's bookkeeping: history, best epoch and early stopping, checkpoints, signals (Ctrl-C, SIGTERM)."""
from __future__ import annotations

import contextlib
import math
import signal
import threading
import time

import torch

from builder.training import checkpoint
from builder.training.distributed import World
from builder.core.errors import UserError
from builder.training.runlog import TensorBoard


class TrainingDiverged(UserError):
    """The loss became NaN or Inf; the message names the epoch and step, and the last good checkpoint."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped the run, after its last finished epoch was saved; `str()` says
    where, and how to go on; `signum` is the signal (the command exits with 128 + signum)."""

    def __init__(self, message, signum=signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)


class RunFinished(Exception):
    """`--resume` of a run that already ended (all its epochs, or early stopping): nothing to train. The
    networks hold the run's kept (best) weights; `str()` says so, and how to train on."""


class Book:
    """The bookkeeping after each epoch: history, best and early stopping, checkpoints, files, console.

    Checkpoints hold everything the next epoch depends on (weights, optimizer and schedule states, the RNG
    state, the history and the early-stopping counters), so a resumed run repeats the uninterrupted one.
    Every epoch's state is snapshotted, but written at most once per `checkpoint.every_seconds` (default
    5; 0 = every epoch) and always at the end, on a NaN stop or on an interrupt: epochs of a few
    milliseconds do not wait for the disk, and a SIGKILL loses at most those seconds."""

    def __init__(self, cfg, run, console, world, seed, resume, callback, tensorboard):
        self.cfg, self.run, self.console, self.world, self.seed = cfg, run, console, world, seed
        self.epochs = cfg.epochs
        self.mode = cfg.mode
        stop = cfg.early_stopping
        self.patience, self.monitor, self.min_delta, self.maximize = \
            stop.patience, stop.monitor, stop.min_delta, stop.maximize
        self.best, self.bad, self.best_epoch = None, 0, 0
        self.best_loss = None  # val.loss at the best epoch: breaks ties of another monitored metric
        self.history = []
        self.first_epoch = 0
        self.resume, self.callback = resume, callback
        self.tb = TensorBoard(run / "events", tensorboard and world.is_main)
        self.parts = None
        self.writer = checkpoint.BackgroundWriter()
        self.pending = {}  # file name -> snapshot not yet handed to the writer
        self.every_seconds = cfg.checkpoint_every_seconds
        self.last_write = -math.inf
        self.saved_epoch = None  # epoch of the newest last.pt handed to the writer
        self.running = False  # between start() and finish(): a signal asks the loop to stop (stop_on_signals)
        self.stop_signal = None
        self.vocabulary = {}  # a language model's {"vocab": [...]} or {"tokenizer": json}, kept in checkpoints
        self.unigram_perplexity = None  # of the training split, printed next to the test perplexity
        self.carry = {}  # what the loop fitted on the data (preparation, class names): in every checkpoint

    def start(self, parts):
        """Remember what to checkpoint; when resuming, load it all back from last.pt."""
        self.parts = parts
        if self.world.is_main:  # what killed writes left behind; this process holds the folder's lock
            checkpoint.remove_temporaries(self.run.path)
        self.running = True
        if not self.resume:
            return
        if not (self.run / "last.pt").exists():  # killed before its first checkpoint: nothing to go on from
            self.console.say(f"{self.run.path} has no checkpoint yet: starting at epoch 1")
            return
        state = checkpoint.load(self.run / "last.pt")
        for kind in ("networks", "optimizers", "schedules"):
            for name, obj in parts[kind].items():
                obj.load_state_dict(state[kind][name])
        if parts.get("scaler") is not None and state.get("scaler"):
            parts["scaler"].load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if torch.cuda.is_available() and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.history = list(state["history"])
        monitor = state["monitor"]
        self.best, self.bad, self.best_epoch = monitor["best"], monitor["bad"], monitor["best_epoch"]
        self.best_loss = monitor.get("best_loss")
        self.first_epoch = int(state["epoch"])
        self.saved_epoch = self.first_epoch
        stopped = state.get("finished") and self.epochs == state.get("planned", self.epochs)
        if self.first_epoch >= self.epochs or stopped:
            self._keep_best()
            why = (f"early stopping ended it at epoch {self.first_epoch}" if stopped else
                   f"it trained {self.first_epoch} of {self.epochs} epochs")
            raise RunFinished(f"{self.run.path} is finished: {why}; nothing to train "
                              f"(train on with --resume {self.run.path} --epochs N, N > {self.first_epoch})")
        if state.get("finished"):
            self.bad = 0  # more epochs asked for after early stopping: patience starts afresh
        self.console.say(f"resuming {self.run.path} at epoch {self.first_epoch + 1}")

    def _keep_best(self):
        """Load the kept weights (best.pt, else last.pt) into the networks."""
        path = self.run / "best.pt" if (self.run / "best.pt").exists() else self.run / "last.pt"
        state = checkpoint.load(path)
        for name, m in self.parts["networks"].items():
            m.load_state_dict(state["networks"][name])

    def stop_point(self):
        """Where the loops may stop for a Ctrl-C or SIGTERM received meanwhile: between steps, and after
        an epoch's checkpoint is handed on (not inside tqdm, torch or a file write)."""
        if self.stop_signal is not None:
            raise KeyboardInterrupt

    def check_finite(self, loss_value, epoch, step):
        if not math.isfinite(loss_value):
            self.write_checkpoints(wait=True)
            self.finish_files()
            last = self.run / "last.pt"
            kept = f"; last good checkpoint: {last}" if last.exists() else ""
            raise TrainingDiverged(f"loss is {loss_value} at epoch {epoch + 1}, step {step + 1}{kept}")

    def epoch_end(self, row) -> bool:
        """Record the epoch; return True when training should stop."""
        self.history.append(row)
        value = row.get(self.monitor)
        improved = value is not None and math.isfinite(value) and (
            self.best is None or (value > self.best + self.min_delta if self.maximize
                                  else value < self.best - self.min_delta))
        loss = row.get("val.loss")
        tie = (not improved and value is not None and value == self.best and loss is not None
               and self.best_loss is not None and loss < self.best_loss)  # equal metric, lower val.loss
        if improved or tie:
            self.best, self.bad, self.best_epoch, self.best_loss = value, 0, row["epoch"], loss
        else:
            self.bad += 1
        stop = self.patience is not None and self.bad >= self.patience  # as Keras and Lightning count
        if self.world.is_main:
            state = self.state(row["epoch"], finished=stop)
            history = state.pop("history")
            state = checkpoint.snapshot(state)
            state["history"] = list(history)  # rows are never changed once written; the list grows
            self.pending["last.pt"] = state
            if improved or tie or value is None:
                self.pending["best.pt"] = state
            if time.monotonic() - self.last_write >= self.every_seconds:
                self.write_checkpoints()
            self.run.write_metrics(self.history)
        self.console.epoch_done(row)
        self.tb.epoch_done(row)
        if stop:
            self.console.say(f"early stopping: {self.monitor} has not improved for {self.bad} epochs "
                             f"(best {self.best:.4g} at epoch {self.best_epoch})")
        if self.callback is not None and self.callback(row):
            stop = True
        return stop

    def write_checkpoints(self, wait=False):
        """Hand the pending snapshots to the background writer (the previous write finishes first).

        best.pt goes first: a kill between the two writes leaves a last.pt older than best.pt, and the
        resumed run replays (and rewrites) that best epoch. The other order would leave a stale best.pt
        that the resumed run believes current, and hands back at the end."""
        if self.pending:
            self.saved_epoch = self.pending.get("last.pt", {}).get("epoch", self.saved_epoch)
            names = sorted(self.pending, key=lambda n: n != "best.pt")
            jobs = [(self.pending[n], self.run / n) for n in names]
            self.pending = {}  # handed on even when the previous write failed: its error is the one to report
            self.writer.submit(jobs)
            self.last_write = time.monotonic()
        if wait:
            self.writer.wait()

    def interrupted(self) -> str:
        """The message of an interrupted run (its finished epochs are on disk by now)."""
        where = self.run.path
        epoch = self.saved_epoch if self.saved_epoch is not None else (self.first_epoch or None)
        if epoch is None:
            return f"interrupted in epoch 1, before any checkpoint; start again (--resume {where} does too)"
        return f"interrupted: epoch {epoch} of {self.epochs} is saved in {where / 'last.pt'}; " \
               f"continue with: build train --resume {where}"

    def state(self, epoch, finished=False):
        parts = self.parts
        return {
            "epoch": epoch,
            "planned": self.epochs,  # with `finished` (early stopping): a resume has nothing to do
            "finished": finished,
            "networks": {n: m.state_dict() for n, m in parts["networks"].items()},
            "optimizers": {n: o.state_dict() for n, o in parts["optimizers"].items()},
            "schedules": {n: s.state_dict() for n, s in parts["schedules"].items()},
            "scaler": parts["scaler"].state_dict() if parts.get("scaler") is not None else None,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "history": self.history,
            "monitor": {"best": self.best, "bad": self.bad, "best_epoch": self.best_epoch,
                        "best_loss": self.best_loss},
            "seed": self.seed,
            **{k: v for k, v in self.carry.items() if v},
            **self.vocabulary,
        }

    def finish(self, test_fn):
        """After the last epoch: back to the best weights (if a validation split chose them), test, plot."""
        self.stop_point()
        self.running = False
        self.write_checkpoints(wait=True)
        best = self.run / "best.pt"
        if self.best is not None:  # the same on every rank: their metrics are all-reduced
            state = checkpoint.load(best) if self.world.is_main else None
            state = _broadcast(state, self.world)
            for name, m in self.parts["networks"].items():
                m.load_state_dict(state["networks"][name])
        test = test_fn()
        if test is not None:
            self.run.write_json("test.json", test)
            unigram = self.unigram_perplexity
            baseline = f"  (unigram perplexity of the training split {unigram:.4g})" \
                if unigram is not None and "perplexity" in test else ""
            self.console.result("test: " + "  ".join(f"{k} {v:.4g}" for k, v in test.items()) + baseline)
        self.finish_files()

    def finish_files(self):
        self.run.close()
        if self.world.is_main:
            self.run.plot(self.history, self.best_epoch if self.best is not None else None)
        self.tb.close()


@contextlib.contextmanager
def stop_on_signals(book):
    """While the loop runs, Ctrl-C (SIGINT) or SIGTERM asks it to stop at its next stop point (after the
    current step); the last finished epoch is saved and TrainingInterrupted raised. A signal before the
    loop starts, or a second one, interrupts at once. Only the main thread can set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if not book.running or book.stop_signal is not None:
            raise KeyboardInterrupt
        book.stop_signal = signum
        book.console.warn(f"{signal.Signals(signum).name}: stopping after this step "
                          "(saving the last finished epoch); again to stop at once")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _broadcast(obj, world: World):
    """Rank 0's object to every rank (the best weights after training)."""
    if not world.active:
        return obj
    import torch.distributed as dist
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
