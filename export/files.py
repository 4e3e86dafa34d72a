"""Writing outputs so that a failure or a kill leaves nothing half-written behind."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from builder.errors import UserError


def check_writable(path) -> Path:
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a file name")
    if not parent.is_dir():
        raise UserError(f"{path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{path}: folder {parent} is not writable")
    return path


@contextlib.contextmanager
def atomic_output(final):
    """Yield a path in a private temporary folder beside `final`; on success every file written there
    (the model, and its external data if any) is fsynced and renamed into place, the model last; on
    failure the folder is removed and `final` is untouched. A failed write (a full disk, a folder that
    refuses files) is a one-line UserError naming `final` and the reason."""
    final = check_writable(final)
    try:
        tmpdir = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    except OSError as e:
        raise UserError(f"{final}: cannot write here: {e.strerror or e}") from None
    try:
        target = tmpdir / final.name
        yield target
        files = sorted(tmpdir.iterdir(), key=lambda p: p.name == final.name)
        for f in files:  # on disk before the rename: a crash never leaves a renamed, empty file
            _fsync(f, os.O_RDONLY)
        for f in files:
            os.replace(f, final.parent / f.name)
        _fsync(final.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as e:
        raise UserError(f"{final}: write failed: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _fsync(path, flags) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
