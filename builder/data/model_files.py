"""Files given to a trained model (`build predict`, `build evaluate`), read the way training read its data.

The training source's layout travels with the model (checkpoint `data_layout`, ONNX `builder.data`); here
it picks the reader: a CSV's columns and groups, an npz's arrays, an image folder's preparation, a series'
windows, a text column's tokenizer. Each input comes back under the network's input name
(builder.data.naming), with the labels when the file has them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from builder.core.errors import UserError
from builder.data import hf_files, images
from builder.data.naming import match_inputs, npz_names

READERS = {s.name: s.for_model for s in (images.SOURCE, hf_files.SOURCE)}  # layout["source"] -> reader(path,
# layout, input_names) -> (fields, names, truth); csv and npz below


def reader(source):
    def register(fn):
        READERS[source] = fn
        return fn
    return register


def read_for_model(path, layout: dict | None, input_names: list[str]):
    """({input name: array}, labels or None) of `path` as the model's training source would read it, or
    None when the layout says nothing about this kind of file (then the plain array readers apply)."""
    layout = dict(layout or {})
    source = layout.get("source") or ("csv" if layout.get("features") is not None else None)
    suffix = Path(path).suffix.lower()
    if suffix == ".npz" and source in (None, "csv", "npz", "npy"):
        source = "npz"  # arrays by name, whatever the training file was
    elif layout.get("window") and source in ("csv", "npy"):
        return _series(path, layout, source, suffix, input_names)
    elif source in ("csv", "npz") and suffix != "." + source:
        return None  # another kind of file: the plain array readers
    fn = READERS.get(source)
    if fn is None:
        return None
    fields, names, truth = fn(path, layout, input_names)
    pick = match_inputs(names, input_names, str(path))
    return {input_names[k]: fields[i] for k, i in enumerate(pick)}, truth


@reader("csv")
def _csv(path, layout, input_names):
    from builder.data.files import read_csv

    missing = "mean" if layout.get("missing") == "mean" else "error"  # never drop: one output per row
    fields, n_inputs, info = read_csv(path, layout=layout, delimiter=layout.get("delimiter", ","), missing=missing)
    if info.get("text"):  # raw text, tokenised with the model's own tokenizer
        from builder.data.text_columns import add_fields
        fields, n_inputs = add_fields(fields, n_inputs, info, None)
    return fields[:n_inputs], info["inputs"], (fields[n_inputs] if len(fields) > n_inputs else None)


@reader("npz")
def _npz(path, layout, input_names):
    target = (layout.get("target") or ["y"])[0]
    arrays_ = layout.get("arrays") or []
    try:
        with np.load(path, allow_pickle=False) as z:
            x = arrays_[0] if len(arrays_) == 1 else "x"
            names = npz_names(z.files, input_names if len(arrays_) != 1 else arrays_, x, target, str(path))
            fields = [z[n] for n in names]
            truth = z[target] if target in z.files else None
    except UserError:
        raise
    except Exception as e:  # BadZipFile, zlib.error, EOFError, ValueError
        raise UserError(f"{path}: not a readable .npz archive ({str(e).splitlines()[0] if str(e) else 'empty'})") from None
    return fields, names if len(names) > 1 else [None], truth


def _series(path, layout, source, suffix, input_names):
    """A raw series (the training source's kind of file) cut into one window per time step."""
    from builder.data import windows

    if suffix != "." + source:
        raise UserError(f"{path}: the model forecasts from a .{source} series like its training data")
    if source == "csv":
        fields, names, truth = _csv(path, layout, input_names)
        fields = fields + ([truth] if truth is not None else [])
    else:
        from builder.data.files import _npy
        fields = [np.asarray(_npy(path))]
    x, truth = windows.for_model(fields, len(fields) - (1 if source == "csv" and truth is not None else 0),
                                 layout["window"], layout.get("had_target", False))
    return {input_names[0]: x}, truth
