"""The run folder `runs/<name>/` and what is written into it, all from rank 0.

    spec.yaml      the spec text as given          resolved.yaml  name, params, resolved train section
    metrics.csv    one row per epoch               last.pt/best.pt checkpoints (see checkpoint.py)
    curves.png     losses and metrics per epoch    test.json      final test metrics
    vocab.json     a language model's characters   tokenizer.json its BPE tokenizer (builder.data.tokenizer)
    .lock          the pid of the training that writes the folder (see RunLock)

metrics.csv is reproducible: the same seed gives the same file, except its last column, `seconds`
(wall time of the epoch), which no two runs share; compare runs on the other columns.

Every file but metrics.csv is written atomically (builder.core.io_utils); metrics.csv is appended to and, after
a kill, rewritten whole from the checkpoint's history on resume. A failed write (full disk, read-only
folder) is a one-line UserError naming the file, and leaves the previous version of the file in place.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import math
import os
import shutil
import sys
from pathlib import Path

import yaml

from builder.core.errors import UserError
from builder.core.io_utils import atomic_write_bytes, atomic_write_text

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
RUN_FILES = ("spec.yaml", "resolved.yaml", "metrics.csv", "last.pt", "best.pt", "curves.png", "test.json",
             "vocab.json", "tokenizer.json", "preparation.json")


def _why(e: OSError) -> str:
    return e.strerror or str(e)


class RunLock:
    """`.lock` in the run folder, holding the pid of the training that owns the folder.

    The lock is an flock(2) on that file, so the kernel releases it when its process dies, however it
    dies: a lock file left behind by a killed training (a stale pid) is simply taken over. A second
    training finds the lock held and stops with the owner's pid. On a clean exit the file is removed."""

    NAME = ".lock"

    def __init__(self, folder):
        self.path = Path(folder) / self.NAME
        self.fd = None

    def acquire(self) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o644)  # a planted link is refused
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise UserError(f"run folder {self.path.parent}: {self.NAME} is a symbolic link; refusing to "
                                    "open it (remove the link)") from None
                raise UserError(f"cannot lock run folder {self.path.parent}: {_why(e)}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EACCES):
                    raise UserError(f"run folder {self.path.parent} is in use by another training (pid {owner}); "
                                    "wait for it to finish, or choose another --run-dir") from None
                raise UserError(f"cannot lock run folder {self.path.parent}: {_why(e)}") from None
            try:  # the previous owner may have removed the file between our open and our flock
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            os.close(fd)
            raise UserError(f"cannot write {self.path}: {_why(e)}") from None
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding the lock (see acquire's stat check)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def holds_run(folder) -> bool:
    """Whether `folder` holds a run that finished at least one epoch (a checkpoint or metrics)."""
    folder = Path(folder)
    return any((folder / name).exists() for name in ("last.pt", "best.pt", "metrics.csv"))


def foreign_files(folder, markers) -> list[str]:
    """The entries of an existing `folder` when it is not empty and not ours (none of the `markers` glob
    patterns, such as a run's resolved.yaml, matches): a fresh training or sweep there would replace the
    user's files. A lock and the temporaries of killed writes alone count as empty."""
    folder = Path(folder)
    markers = (markers,) if isinstance(markers, str) else markers
    if not folder.is_dir() or any(next(iter(folder.glob(m)), None) is not None for m in markers):
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != RunLock.NAME and not
                  (p.name.startswith(".") and p.name.endswith(".tmp")))


def refuse_foreign(folder, markers, flag: str) -> None:
    """A one-line refusal for a non-empty folder that holds no run of ours (see foreign_files)."""
    found = foreign_files(folder, markers)
    if found:
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise UserError(f"{flag} {folder} is not empty and holds no run of ours ({shown}); choose an empty or "
                        "new folder, or pass --overwrite to write there anyway")


class RunFolder:
    """The folder of one training. Rank 0 (`enabled`) creates it, locks it (RunLock) and refuses to start a
    fresh run over one that finished an epoch, unless `overwrite` (its run files are deleted first) or
    `resume` (the run goes on)."""

    def __init__(self, path, enabled=True, *, resume=False, overwrite=False):
        self.path = Path(path)
        self.enabled = enabled
        self._csv = None  # (open file, DictWriter) of metrics.csv
        self.lock = RunLock(self.path)
        if not enabled:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create run folder {self.path}: {_why(e)}") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise UserError(f"run folder {self.path} is not writable")
        if not resume and not overwrite:
            refuse_foreign(self.path, "resolved.yaml", "run folder")
        self.lock.acquire()
        try:
            if not resume and holds_run(self.path):
                if not overwrite:
                    raise UserError(f"run folder {self.path} already holds a run; continue it with --resume "
                                    f"{self.path}, start it over with --overwrite, or choose another --run-dir")
                self._clear()
        except BaseException:
            self.release()
            raise

    def _clear(self) -> None:
        """--overwrite: delete the previous run's files (only those a training writes)."""
        from builder.training.checkpoint import remove_temporaries
        try:
            for name in RUN_FILES:
                (self.path / name).unlink(missing_ok=True)
            shutil.rmtree(self.path / "events", ignore_errors=True)
            remove_temporaries(self.path)
        except OSError as e:
            raise UserError(f"--overwrite: cannot clear {self.path}: {_why(e)}") from None

    def release(self) -> None:
        """Close metrics.csv and give up the folder's lock (at the end of a training, however it ends)."""
        self.close()
        self.lock.release()

    def __truediv__(self, name) -> Path:
        return self.path / name

    def write_spec(self, spec_text, resolved: dict) -> None:
        if not self.enabled:
            return
        # resolved.yaml first: it marks the folder as a run of ours (refuse_foreign) from the first file on
        atomic_write_text(self.path / "resolved.yaml", yaml.safe_dump(resolved, sort_keys=False))
        if spec_text is not None:
            atomic_write_text(self.path / "spec.yaml", spec_text)

    def write_metrics(self, history: list[dict]) -> None:
        """Add the newest row to metrics.csv; the whole file is written when it is first opened (after a
        resume too) or when the columns change. The file stays open: an epoch may take milliseconds.
        A failed append is cut off again, so the file never ends in half a row."""
        if not self.enabled or not history:
            return
        path = self.path / "metrics.csv"
        if self._csv is None or set(history[-1]) - set(self._csv[1].fieldnames):
            columns = []
            for row in history:
                columns += [k for k in row if k not in columns and k != "seconds"]
            columns.append("seconds")
            self.close()
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=columns)
            writer.writeheader()
            for row in history:
                writer.writerow({k: _fmt(v) for k, v in row.items()})
            atomic_write_text(path, text.getvalue())  # after a resume: no rows of killed epochs remain
            try:  # the file just written; a link planted since is refused, never followed
                f = os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | NOFOLLOW), "a", newline="")
            except OSError as e:
                raise UserError(f"cannot write {path}: {_why(e)}") from None
            self._csv = (f, csv.DictWriter(f, fieldnames=columns))
            return
        f, writer = self._csv
        end = f.tell()
        try:
            writer.writerow({k: _fmt(v) for k, v in history[-1].items()})
            f.flush()
        except OSError as e:
            self._csv = None
            with contextlib.suppress(OSError):
                f.close()
            with contextlib.suppress(OSError):
                os.truncate(path, end)
            raise UserError(f"cannot write {path}: {_why(e)}") from None

    def close(self) -> None:
        if self._csv is not None:
            f, self._csv = self._csv[0], None
            try:
                f.close()
            except OSError as e:
                raise UserError(f"cannot write {self.path / 'metrics.csv'}: {_why(e)}") from None

    def write_text(self, name, text: str) -> None:
        if self.enabled:
            atomic_write_text(self.path / name, text)

    def write_json(self, name, data) -> None:
        if self.enabled:
            atomic_write_text(self.path / name, json.dumps(data, indent=2) + "\n")

    def plot(self, history: list[dict], kept: int | None = None) -> None:
        """curves.png: one panel for the losses, one per other metric, x = epoch; a dashed line marks the
        `kept` epoch (the best validated one, whose weights the run hands on)."""
        if not self.enabled or not history:
            return
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = [k for k in history[-1] if k not in ("epoch", "seconds", "lr")]
        losses = [k for k in keys if k.endswith("loss")]
        others = sorted({k.split(".", 1)[-1] for k in keys if k not in losses})
        panels = [("loss", losses)] + [(m, [k for k in keys if k.split(".", 1)[-1] == m]) for m in others]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
        epochs = [r["epoch"] for r in history]
        for ax, (title, series) in zip(axes[0], panels):
            for k in series:
                ax.plot(epochs, [r.get(k, math.nan) for r in history], label=k, marker="." if len(epochs) < 30 else None)
            if kept:
                ax.axvline(kept, color="gray", linestyle="--", linewidth=1, label=f"kept: epoch {kept}")
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.legend()
            ax.grid(alpha=0.3)
        fig.tight_layout()
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=100)
        plt.close(fig)
        atomic_write_bytes(self.path / "curves.png", png.getvalue())


def read_resolved(run_dir) -> dict:
    """A run's resolved.yaml, read like every untrusted file (builder.text.readers: size, depth, aliases)."""
    from builder.text.readers import MAX_RECORD_BYTES, MAX_RECORD_NODES, read_yaml_file

    path = Path(run_dir) / "resolved.yaml"
    if not path.exists():
        raise UserError(f"--resume {run_dir}: not a run folder (no resolved.yaml)")
    resolved = read_yaml_file(path, "--resume", MAX_RECORD_BYTES, MAX_RECORD_NODES)
    if not isinstance(resolved, dict) or not isinstance(resolved.get("train"), dict):
        raise UserError(f"--resume {run_dir}: resolved.yaml is not a run's record (no train section)")
    return resolved


def run_params(run_dir) -> dict:
    """The params a run was trained with (its resolved.yaml: the spec's values, the run's `--set`s and the
    sizes it took from the data), {} without a run folder or without that record."""
    from builder.text.readers import MAX_RECORD_BYTES, MAX_RECORD_NODES, read_yaml_file

    path = Path(run_dir or "") / "resolved.yaml"
    if not run_dir or not path.is_file():
        return {}
    doc = read_yaml_file(path, f"--run {run_dir}", MAX_RECORD_BYTES, MAX_RECORD_NODES)  # bounded, untrusted
    params = (doc.get("params") if isinstance(doc, dict) else None) or {}
    if not isinstance(params, dict):
        raise UserError(f"--run {run_dir}: resolved.yaml's params are not a mapping")
    return {k: v for k, v in params.items() if isinstance(k, str)}


class Console:
    """What the user sees: a tqdm bar per epoch (unless quiet) and, with log_json, one JSON line per epoch."""

    def __init__(self, quiet=False, log_json=False, enabled=True):
        self.enabled = enabled
        self.quiet = quiet or not enabled
        self.log_json = log_json and enabled

    def bar(self, iterable, total, epoch, epochs):
        """A progress bar only on a terminal: piped or logged output gets the epoch lines alone."""
        if self.quiet or not sys.stderr.isatty():
            return iterable
        from tqdm import tqdm
        return tqdm(iterable, total=total, desc=f"epoch {epoch}/{epochs}", leave=False, file=sys.stderr,
                    dynamic_ncols=True)

    def epoch_done(self, row):
        if self.log_json:
            print(json.dumps({k: _fmt(v) for k, v in row.items()}), flush=True)
        elif not self.quiet:
            text = "  ".join(f"{k} {_short(v)}" for k, v in row.items())
            print(text, file=sys.stderr, flush=True)

    def say(self, text):
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def result(self, text):
        """The run's outcome (the test line): printed even with --quiet, by rank 0 only."""
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def warn(self, text):
        """Printed even with --quiet (but by rank 0 only)."""
        if self.enabled:
            print(f"warning: {text}", file=sys.stderr, flush=True)


class TensorBoard:
    """Optional event files (`--tensorboard`); needs the tensorboard package, imported only when asked."""

    def __init__(self, path, enabled):
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UserError("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
            self.writer = SummaryWriter(str(path))

    def epoch_done(self, row):
        if self.writer:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, row["epoch"])
            self.writer.flush()

    def close(self):
        if self.writer:
            self.writer.close()


def _fmt(v):
    return float(f"{v:.10g}") if isinstance(v, float) else v


def _short(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)
