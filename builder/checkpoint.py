"""Checkpoints that survive a kill at any moment: write a temporary file beside the target, fsync it,
then `os.replace` it over the target (atomic on POSIX), and fsync the folder so the rename is durable.
Loading uses `weights_only=True`: a checkpoint can hold tensors and plain data, never code.

The trainer snapshots its state at the end of every epoch and writes it through a `BackgroundWriter`, so
the fsyncs (about 10 ms each here) overlap the next epoch; see training.book.Book for how often."""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import torch

from .errors import UserError
from .io_utils import usual_mode


def save_atomic(obj, path) -> None:
    """torch.save `obj` to `path` so that a kill or a failed write at any moment leaves the old file (or
    the new one) and never part of one. A failed write (full disk, read-only folder) is a one-line
    UserError naming the file and the reason; its temporary file is removed."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        usual_mode(fd)
    except OSError as e:
        raise UserError(f"cannot write checkpoint {path}: {e.strerror or e}") from None
    sink = None
    try:
        with os.fdopen(fd, "wb", buffering=0) as f:
            sink = _Sink(f)
            torch.save(obj, sink)
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        cause = sink.error if sink is not None and sink.error is not None else e
        if isinstance(cause, OSError):  # torch.save reports a failed write as an 'enforce fail' RuntimeError
            raise UserError(f"cannot write checkpoint {path}: {cause.strerror or cause}") from None
        raise


class _Sink:
    """The file object torch.save writes to: writes every byte (a short write on a full disk turns into
    the OSError it is) and keeps that OSError, which torch.save replaces by a RuntimeError of its own."""

    def __init__(self, f):
        self.f = f
        self.error = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += self.f.write(view[done:])
        except OSError as e:
            self.error = e
            raise
        return done

    def flush(self) -> None:
        pass


def load(path, map_location="cpu"):
    path = Path(path)
    if not path.exists():
        raise UserError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which, in one line
        raise UserError(f"cannot load checkpoint {path}: {load_failure(e)}") from None


def load_failure(e: Exception) -> str:
    """One line on why torch.load(weights_only=True) refused a file: for a pickle that names code (a
    malicious or merely foreign checkpoint), the global it wanted, not torch's paragraph of advice."""
    text = str(e)
    if "Weights only load failed" in text:
        for line in text.splitlines():
            line = line.strip()
            if line.startswith(("Unsupported global", "Unsupported operand", "Trying to call")) or "GLOBAL" in line:
                return (f"refused to unpickle it ({line.rstrip('.')}): checkpoints are loaded with "
                        "weights_only=True and may hold tensors and plain data, never code")
        return "refused to unpickle it: it holds more than tensors and plain data (weights_only=True)"
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


def remove_temporaries(folder) -> None:
    """Delete what killed writes left behind: the `.<name>.<random>.tmp` files of save_atomic and of
    io_utils.atomic_write_* (checkpoints, metrics.csv, spec.yaml, ...); call only while no write is running."""
    for tmp in Path(folder).glob(".*.*.tmp"):
        tmp.unlink(missing_ok=True)


class BackgroundWriter:
    """Writes checkpoints on a thread, one batch of files at a time; `wait()` blocks until they are on
    disk (and re-raises a failed write as a one-line error). Hand it snapshots, not live state."""

    def __init__(self):
        self._thread = None
        self._error = None

    def submit(self, jobs) -> None:
        """`jobs`: (state, path) pairs, written in order."""
        self.wait()

        def write():
            try:
                for state, path in jobs:
                    save_atomic(state, path)
            except BaseException as e:  # handed to the trainer at its next wait()
                self._error = e

        self._thread = threading.Thread(target=write, name="checkpoint-writer")
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error if isinstance(error, UserError) else UserError(f"cannot write checkpoint: {error}")


def snapshot(obj):
    """A deep copy of a state (tensors cloned), so training can go on while it waits to be written."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj
