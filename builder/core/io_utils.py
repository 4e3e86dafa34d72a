"""The one atomic write of the code base: every file we produce (checkpoints, run files, exported models,
predictions, the schema) is written into a private temporary folder beside its target, fsynced, renamed
over the target (atomic on POSIX) and the target's folder fsynced, so the rename survives a power cut.

A crash or a kill at any moment leaves either the old file or the new one, never half of one; what a
kill leaves behind is a `.<name>.<random>.tmp` folder, which `remove_temporaries` deletes.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from builder.core.errors import UserError


def check_writable(path) -> Path:
    """`path` as a Path, or a one-line UserError when it names a folder or a missing/read-only folder's file."""
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
def atomic_output(final, what: str | None = None):
    """Yield a path in a private temporary folder beside `final`; write the file there (and any files
    that belong beside it, such as an ONNX model's external data). On success every file is fsynced,
    renamed into place (`final` last) and the folder fsynced; on failure `final` is untouched and the
    temporary folder removed. An OSError (full disk, read-only folder) becomes a one-line UserError:
    `cannot write <what> FINAL: why` when `what` is given, else `FINAL: write failed: why`."""
    final = Path(final)
    folder = final.parent if str(final.parent) else Path(".")

    def failure(e: OSError, stage: str) -> UserError:
        why = e.strerror or str(e)
        return UserError(f"cannot write {what} {final}: {why}" if what else f"{final}: {stage}: {why}")

    try:
        tmpdir = Path(tempfile.mkdtemp(dir=folder, prefix=f".{final.name}.", suffix=".tmp"))
    except OSError as e:
        raise failure(e, "cannot write here") from None
    try:
        yield tmpdir / final.name
        files = sorted(tmpdir.iterdir(), key=lambda p: p.name == final.name)
        for f in files:  # on disk before the rename: a crash never leaves a renamed, empty file
            _fsync(f, os.O_RDONLY)
        for f in files:
            os.replace(f, folder / f.name)
        _fsync(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as e:
        raise failure(e, "write failed") from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _fsync(path, flags) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` atomically, creating its folder if needed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{path}: cannot write here: {e.strerror or e}") from None
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_temporaries(folder) -> None:
    """Delete what killed atomic writes left behind in `folder` (their `.<name>.<random>.tmp` folders, and
    the `.tmp` files of earlier versions); call only while no write into `folder` is running."""
    for tmp in Path(folder).glob(".*.*.tmp"):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
