"""Checkpoints that survive a kill at any moment: write a temporary file beside the target, fsync it,
then `os.replace` it over the target (atomic on POSIX), and fsync the folder so the rename is durable.
Loading uses `weights_only=True`: a checkpoint can hold tensors and plain data, never code."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from .errors import UserError


def save_atomic(obj, path) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(path, map_location="cpu"):
    path = Path(path)
    if not path.exists():
        raise UserError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which, in one line
        raise UserError(f"cannot load checkpoint {path}: {str(e).splitlines()[0]}") from None


def remove_temporaries(folder) -> None:
    """Delete what killed writes left behind (`.last.pt.*.tmp`); call only while no write is running."""
    for tmp in Path(folder).glob(".*.pt.*.tmp"):
        tmp.unlink(missing_ok=True)
