"""Input files for `build predict`: .npy (one input), .npz (arrays named like the inputs), .csv (one input,
one sample per row), checked against what the model takes, with one clear line when they do not fit."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from builder.core.errors import UserError


@dataclass(frozen=True)
class ModelInput:
    name: str
    shape: tuple  # int, or str / None for a dynamic dim
    dtype: str  # numpy dtype name: float32, int64, bool
    value_range: tuple | None = None

    def describe(self) -> str:
        dims = ", ".join(str(d) if d is not None else "?" for d in self.shape)
        return f"'{self.name}' {self.dtype} [{dims}]"


def read_arrays(path, inputs: list[ModelInput]) -> dict[str, np.ndarray]:
    """The arrays of `path`, one per model input (by name)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such input file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arrays = [_load_npy(path)]
        if len(inputs) != 1:
            raise UserError(f"{path}: a .npy file holds one array, the model takes {len(inputs)} inputs "
                            f"({', '.join(i.name for i in inputs)}): use an .npz with one array per input name")
        return {inputs[0].name: arrays[0]}
    if suffix == ".npz":
        return _from_npz(path, inputs)
    if suffix == ".csv":
        if len(inputs) != 1:
            raise UserError(f"{path}: a .csv file holds one input, the model takes {len(inputs)} "
                            f"({', '.join(i.name for i in inputs)}): use an .npz with one array per input name")
        return {inputs[0].name: _read_csv(path, inputs[0])}
    raise UserError(f"{path}: expected a .npy, .npz or .csv file, got '{suffix or 'no suffix'}'")


def read_inputs(path, inputs: list[ModelInput], layout: dict | None = None):
    """({input: array}, labels or None) of `path` for `build predict` and `build evaluate` alike: read as the
    model's training source read its data (builder.data.model_files: CSV layout, npz names, images,
    series, text), else as plain arrays."""
    from builder.data.model_files import read_for_model

    if not Path(path).exists() and not any(c in str(path) for c in "*?["):  # a glob: images
        raise UserError(f"{path}: no such input file")
    found = read_for_model(path, layout, [i.name for i in inputs])
    if found is not None:
        return found
    return read_arrays(path, inputs), None


def read_images(items, layout: dict | None, inputs: list[ModelInput], source: str = "request"):
    """{input: images} of base64-encoded image files (PNG, JPEG, ...; `build serve`'s JSON), each decoded and
    prepared as the model's training images were (builder.data.images.decode: mode, resize, crop; the
    normalisation is inside the exported graph), as float32 [N, C, H, W] in [0, 1]."""
    import base64
    import binascii
    import io

    from builder.data.images import decode

    if (layout or {}).get("source") != "images" or len(inputs) != 1:
        raise UserError(f"{source}: this model was not trained on images (source: images): send 'inputs'")
    if not isinstance(items, list) or not items or not all(isinstance(s, str) for s in items):
        raise UserError(f"{source}: 'images' must be a non-empty list of base64-encoded image files")
    out = []
    for i, text in enumerate(items):
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise UserError(f"{source}: images[{i}] is not base64") from None
        try:
            out.append(decode(io.BytesIO(raw), layout))
        except UserError as e:  # the decoder names its file; here the file is the i-th image of the request
            raise UserError(f"{source}: images[{i}]: {str(e).split(': ', 1)[-1]}") from None
    return {inputs[0].name: np.stack(out).astype(np.float32) / 255}


def read_rows(rows, layout: dict, inputs: list[ModelInput], source: str = "request"):
    """({input: features}, labels or None) of rows given as {column: value} objects (`build serve`'s JSON),
    encoded by the training file's layout exactly like a CSV of the same cells (builder.data.files)."""
    from builder.data.files import read_csv

    if len(inputs) != 1:
        raise UserError(f"{source}: rows of columns feed one input, the model takes {len(inputs)}")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{source}: 'rows' must be a non-empty list of objects {{column: value}}")
    header = list(dict.fromkeys(str(k) for r in rows for k in r))
    body = [["" if r.get(h) is None else str(r.get(h)) for h in header] for r in rows]
    missing = "mean" if layout.get("missing") == "mean" else "error"
    fields, _, _ = read_csv(f"{source} row", layout=layout, missing=missing,
                            rows=(header, list(range(1, len(rows) + 1)), body))
    return {inputs[0].name: fields[0]}, (fields[1] if len(fields) > 1 else None)


def _load_npy(path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # EOFError, ValueError, a SyntaxError from a damaged header
        raise UserError(f"{path}: not a readable .npy array ({str(e).splitlines()[0] if str(e) else 'empty'})") from None


def _from_npz(path, inputs) -> dict:
    from builder.data.model_files import read_for_model

    return read_for_model(path, None, [i.name for i in inputs])[0]


def _read_csv(path, inp: ModelInput) -> np.ndarray:
    """A table of numbers, one sample per row. The first row is skipped as a header only when it holds
    names (no number, no missing-value marker), so a first sample with a BOM (utf-8-sig) or an `NA` cell
    is read or refused, never dropped."""
    from builder.data.files import MISSING

    rows, header_seen = [], False
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            for lineno, row in enumerate(csv.reader(f), start=1):
                if not row or all(not c.strip() for c in row):
                    continue
                try:
                    rows.append([float(c) for c in row])
                except ValueError:
                    if not rows and not header_seen and not any(
                            _is_number(c) or c.strip().lower() in MISSING for c in row):
                        header_seen = True  # a header: names only
                        continue
                    bad = next(c for c in row if not _is_number(c))
                    if bad.strip().lower() in MISSING:
                        raise UserError(f"{path}:{lineno}: missing value {bad!r}: every row gets a prediction, "
                                        "so fill it (or drop the row)") from None
                    raise UserError(f"{path}:{lineno}: '{bad}' is not a number") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    except csv.Error as e:  # a field over the csv module's limit (131,072 characters), a NUL byte, ...
        raise UserError(f"{path}: not a readable CSV file ({e})") from None
    if not rows:
        raise UserError(f"{path}: no rows of numbers")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise UserError(f"{path}: rows have different numbers of columns ({sorted(widths)})")
    table = np.array(rows)
    if np.issubdtype(np.dtype(inp.dtype), np.integer) and np.all(table == np.round(table)):
        table = table.astype(np.int64)
    static = inp.shape[1:]
    if static and all(isinstance(d, int) for d in static):
        features = int(np.prod(static))
        if table.shape[1] != features:
            raise UserError(f"{path}: {table.shape[1]} columns, input {inp.describe()} needs {features} per row")
        table = table.reshape((table.shape[0],) + tuple(static))
    return table


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


_SAFE_CASTS = {
    "float32": ("float64", "float16", "float32"),
    "float16": ("float32", "float64", "float16"),
    "float64": ("float32", "float64", "float16"),
    "int64": ("int64", "int32", "int16", "int8", "uint8", "uint16", "uint32"),
    "int32": ("int32", "int16", "int8", "uint8", "uint16"),
    "bool": ("bool",),
}


def conform(arrays: dict[str, np.ndarray], inputs: list[ModelInput], source: str) -> dict[str, np.ndarray]:
    """Check dtypes, ranks, static dims and value ranges; cast where nothing is lost; add a batch axis
    to a single sample. Every input must have the same number of samples."""
    out = {}
    for inp in inputs:
        a = np.asarray(arrays[inp.name])
        if a.dtype != np.dtype(inp.dtype):
            if a.dtype.name == "bool" and inp.dtype in ("int64", "int32", "float32"):
                a = a.astype(inp.dtype)  # masks given as booleans
            elif a.dtype.name in _SAFE_CASTS.get(inp.dtype, ()):
                a = a.astype(inp.dtype)
            elif inp.dtype.startswith("int") and a.dtype.kind == "f" and a.size and np.all(a == np.round(a)):
                a = a.astype(inp.dtype)  # whole numbers stored as floats (e.g. from a csv)
            else:
                dims = ", ".join(str(d) if d is not None else "?" for d in inp.shape)
                raise UserError(f"{source}: input '{inp.name}' [{dims}] expects {inp.dtype}, got {a.dtype.name}"
                                + (" (scale images to float first)" if a.dtype.kind in "ui" else ""))
        if a.ndim == len(inp.shape) - 1 and _fits(a.shape, inp.shape[1:]):
            a = a[None]  # one sample
        elif a.ndim >= 1 and not _fits(a.shape[1:], inp.shape[1:]) and all(isinstance(d, int) for d in inp.shape[1:]) \
                and a[:1].size == int(np.prod(inp.shape[1:])) and len(a):
            a = a.reshape(len(a), *inp.shape[1:])  # the view training takes (24 lag columns as [24, 1])
        if a.ndim != len(inp.shape) or not _fits(a.shape, inp.shape):
            raise UserError(f"{source}: input {inp.describe()} got an array of shape {list(a.shape)}")
        if inp.value_range and a.size and a.dtype.kind in "iu":
            low, high = inp.value_range
            if a.min() < low or a.max() >= high:
                raise UserError(f"{source}: input '{inp.name}' has values in [{a.min()}, {a.max()}], the "
                                f"model takes [{low}, {high})")
        if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
            bad = ~np.isfinite(a.reshape(len(a), -1))
            raise UserError(f"{source}: input '{inp.name}' holds {int(bad.sum()):,} NaN or Inf value(s), the first "
                            f"in sample {int(np.argmax(bad.any(axis=1)))}; the model's outputs for it would be "
                            "meaningless: fix or drop those samples")
        if len(a) == 0:
            raise UserError(f"{source}: input '{inp.name}' holds no samples (shape {list(a.shape)})")
        out[inp.name] = a
    counts = {len(a) for a in out.values()}
    if len(counts) > 1:
        raise UserError(f"{source}: inputs have different numbers of samples: "
                        + ", ".join(f"{n}={len(a)}" for n, a in out.items()))
    return out


def _fits(shape, want) -> bool:
    return len(shape) == len(want) and all(not isinstance(w, int) or s == w for s, w in zip(shape, want))
