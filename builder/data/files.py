"""Data from files: CSV tables, .npz/.npy arrays and IDX (the MNIST ubyte format, plain or .gz).

Each reader returns `(fields, n_inputs, info)` like the built-in sources. Plain .npy and uncompressed IDX
files come back as read-only memmaps, so large data is never read whole.
"""
from __future__ import annotations

import csv
import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import UserError

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _path(path, what):
    if not path:
        raise UserError(f"{what} data needs a 'path'")
    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} data: no such file: {p}")
    return p


def read_csv(path, target, categorical="auto", drop=(), columns=None):
    """Target column(s) by name, all other columns as features; text columns one-hot encoded.

    `columns` fixes the category lists (from the training file) so that every split encodes alike."""
    p = _path(path, "csv")
    with open(p, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise UserError(f"csv data: {p} is empty")
    header, body = rows[0], rows[1:]
    targets = [target] if isinstance(target, str) else list(target or [])
    for name in targets + list(drop):
        if name not in header:
            raise UserError(f"csv data: {p} has no column '{name}' (columns: {', '.join(header)})")
    table = {name: [r[i] for r in body] for i, name in enumerate(header)}
    columns = dict(columns or {})

    def numeric(values):
        try:
            return np.array([float(v) for v in values], dtype=np.float32)
        except ValueError:
            return None

    def encode(name):
        values = table[name]
        as_number = None if name in columns or (categorical != "auto" and name in categorical) else numeric(values)
        if as_number is not None:
            return as_number.reshape(-1, 1), None
        cats = columns.setdefault(name, sorted(set(values)))
        index = {c: i for i, c in enumerate(cats)}
        unknown = sorted(set(values) - set(index))
        if unknown:
            raise UserError(f"csv data: {p}: column '{name}' has values not seen in training: {unknown[:5]}")
        codes = np.array([index[v] for v in values], dtype=np.int64)
        return np.eye(len(cats), dtype=np.float32)[codes], cats

    features = [encode(n)[0] for n in header if n not in targets and n not in drop]
    x = np.concatenate(features, axis=1) if features else np.zeros((len(body), 0), np.float32)
    info = {"feature_columns": [n for n in header if n not in targets and n not in drop], "columns": columns}
    if not targets:
        return [x], 1, info
    if len(targets) == 1 and (targets[0] in columns or numeric(table[targets[0]]) is None):
        cats = columns.setdefault(targets[0], sorted(set(table[targets[0]])))
        index = {c: i for i, c in enumerate(cats)}
        y = np.array([index[v] for v in table[targets[0]]], dtype=np.int64)
        info["classes"], info["num_classes"] = cats, len(cats)
    else:
        y = np.concatenate([encode(t)[0] for t in targets], axis=1)
    return [x, y], 1, info


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_npz(path, x="x", y="y"):
    """Arrays `x` (and `y`, if present) from a .npz archive (read whole: zip members cannot be mapped).
    Never unpickles: an object array is refused."""
    p = _path(path, "npz")
    try:
        with np.load(p, allow_pickle=False) as z:
            if x not in z:
                raise UserError(f"npz data: {p} has no array '{x}' (arrays: {', '.join(z.files) or 'none'})")
            fields = [z[x]] + ([z[y]] if y and y in z else [])
    except UserError:
        raise
    except Exception as e:  # BadZipFile, zlib.error, EOFError, ValueError, a SyntaxError from a damaged header
        raise UserError(f"npz data: {p} is not a readable .npz archive ({_first_line(e)})") from None
    return fields, 1, {}


def read_npy(x, y=None):
    """Arrays from .npy files as read-only memmaps: rows are read only when a batch needs them."""
    fields = [_npy(x)]
    if y:
        fields.append(_npy(y))
    return fields, 1, {}


def _npy(path):
    """A .npy file as a read-only memmap; truncated files, object (pickled) arrays and other damage are
    one-line errors."""
    p = _path(path, "npy")
    try:
        with open(p, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
    except Exception as e:  # EOFError, ValueError, a SyntaxError from a damaged header
        raise UserError(f"npy data: {p} is not a readable .npy array ({_first_line(e)})") from None
    if dtype.hasobject:
        raise UserError(f"npy data: {p} holds Python objects (a pickled {dtype} array); only numeric arrays "
                        "are read (pickles could run code)")
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = p.stat().st_size
    if size < need:
        raise UserError(f"npy data: {p} is truncated: its header says {dtype} {list(shape)} "
                        f"({need:,} bytes), the file holds {size:,}")
    try:
        return np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"npy data: {p} is not a readable .npy array ({_first_line(e)})") from None


def read_idx(path):
    """One IDX array (magic 0 0 type ndim, big-endian int32 dims, then data); .gz files are read whole."""
    p = _path(path, "idx")
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_TYPES:
                raise UserError(f"idx data: {p} is not an IDX file (bad magic {head.hex() or 'none: empty file'})")
            dtype, ndim = np.dtype(IDX_TYPES[head[2]]), head[3]
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim or ndim == 0:
                raise UserError(f"idx data: {p} is truncated inside its header ({ndim} dims announced)")
            shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">i4"))
            if any(d < 0 for d in shape):
                raise UserError(f"idx data: {p}: negative size in its header {list(shape)}")
            count = int(np.prod(shape, dtype=np.int64))
            if p.suffix == ".gz":
                data = np.frombuffer(f.read(), dtype=dtype)
                if data.size != count:
                    raise UserError(f"idx data: {p} holds {data.size:,} values, its header says {list(shape)} "
                                    f"({count:,})" + (": the file is truncated" if data.size < count else ""))
                return data.reshape(shape)
    except (OSError, EOFError, zlib.error, ValueError) as e:  # gzip: truncated or corrupt stream
        raise UserError(f"idx data: {p} is truncated or corrupt ({_first_line(e)})") from None
    offset = 4 + 4 * ndim
    size = p.stat().st_size
    if size - offset < count * dtype.itemsize:
        raise UserError(f"idx data: {p} is truncated: its header says {list(shape)} {dtype.name} "
                        f"({count * dtype.itemsize:,} bytes of data), the file holds {max(size - offset, 0):,}")
    if count == 0:
        return np.zeros(shape, dtype)
    return np.memmap(p, dtype=dtype, mode="r", offset=offset, shape=shape)


def read_idx_pair(images, labels=None):
    """MNIST-style images (N, H, W) as (N, 1, H, W) plus their labels as int64."""
    x = read_idx(images)
    if x.ndim == 3:
        x = x.reshape(x.shape[0], 1, *x.shape[1:])
    fields = [x]
    if labels:
        y = read_idx(labels)
        if len(y) != len(x):
            raise UserError(f"idx data: {len(x)} images but {len(y)} labels")
        fields.append(np.asarray(y, dtype=np.int64))
    return fields, 1, {}
