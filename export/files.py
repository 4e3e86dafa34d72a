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
    (the model, and its external data if any) is renamed into place, the model last; on failure the
    folder is removed and `final` is untouched."""
    final = check_writable(final)
    tmpdir = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        target = tmpdir / final.name
        yield target
        for f in sorted(tmpdir.iterdir(), key=lambda p: p.name == final.name):
            os.replace(f, final.parent / f.name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
