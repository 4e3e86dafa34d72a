"""Checkpoints that survive a kill at any moment, and the one reader of torch files.

Writing goes through io_utils.atomic_output (temporary file, fsync, rename, fsync of the folder).
Reading is `load`, the only torch.load of the code base: `weights_only=True`, so a checkpoint or a
weights file can hold tensors and plain data, never code.

The trainer snapshots its state at the end of every epoch and writes it through a `BackgroundWriter`, so
the fsyncs (about 10 ms each here) overlap the next epoch; see training.book.Book for how often."""
from __future__ import annotations

import threading
from pathlib import Path

import torch

from builder.core.errors import UserError
from builder.core.io_utils import atomic_output, remove_temporaries

__all__ = ["save_atomic", "load", "load_failure", "remove_temporaries", "BackgroundWriter", "snapshot"]


def save_atomic(obj, path) -> None:
    """torch.save `obj` to `path` so that a kill or a failed write at any moment leaves the old file (or
    the new one) and never part of one. A failed write (full disk, read-only folder) is a one-line
    UserError naming the file and the reason; its temporary file is removed."""
    sink = None
    try:
        with atomic_output(path, what="checkpoint") as tmp, open(tmp, "wb", buffering=0) as f:
            sink = _Sink(f)
            torch.save(obj, sink)
    except RuntimeError:  # torch.save reports a failed write as an 'enforce fail' RuntimeError
        if sink is not None and sink.error is not None:
            e = sink.error
            raise UserError(f"cannot write checkpoint {path}: {e.strerror or e}") from None
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


def load(path):
    """What a torch file holds (a checkpoint, a state_dict), loaded on the CPU with weights_only=True.
    A missing, truncated, foreign or malicious file is a one-line UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such weights file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file raises many types: say which, in one line
        raise UserError(f"{path}: cannot load weights ({load_failure(e)})") from None


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
