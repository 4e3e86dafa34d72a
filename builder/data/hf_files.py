"""`source: datasets`: local Parquet, JSON Lines, Arrow or CSV files read through Hugging Face `datasets`.

    data: {source: datasets, path: "data/*.parquet", inputs: [a, b, c], target: label}
    data: {source: datasets, files: {train: big/*.parquet, val: val.parquet}, streaming: true, buffer: 10000, ...}

Files are always read as a stream (nothing is copied into a cache). Without `streaming` the rows are
collected into memory once and split like any other source; with `streaming: true` every epoch is one
pass over the files, shuffled through a buffer of `buffer` rows seeded by (seed, epoch): a resumed run
replays the same order from its next epoch on. `inputs:` lists the input columns (a column of lists is
one array per row), or maps input names to column lists like the CSV source; a text `target` gives
class names (sorted), whose order travels with the model.
"""
from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import torch

from builder.core.errors import UserError
from builder.data.dataset import Data, Dataset
from builder.data.source import Source

FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".arrow": "arrow", ".csv": "csv"}


def _files(path) -> tuple[list[str], str]:
    paths = [str(path)] if isinstance(path, (str, Path)) else list(path or [])
    found = []
    for p in paths:
        hits = sorted(glob.glob(str(p))) if any(c in str(p) for c in "*?[") else [str(p)] if Path(p).is_file() else []
        if not hits:
            raise UserError(f"datasets data: no such file: {p}")
        found += hits
    if not found:
        raise UserError("datasets data needs a 'path' (a file, a glob or a list of files)")
    kinds = {FORMATS.get(Path(f).suffix.lower()) for f in found}
    if None in kinds or len(kinds) != 1:
        raise UserError(f"datasets data: {', '.join(found[:3])}: one kind of file, .parquet, .jsonl, .arrow or .csv")
    return found, kinds.pop()


def _stream(files, fmt):
    from datasets import load_dataset
    try:
        return load_dataset(fmt, data_files=files, split="train", streaming=True)
    except Exception as e:  # datasets raises many kinds for a bad file
        raise UserError(f"datasets data: cannot read {files[0]}: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}") from None


def _groups(columns, inputs, target) -> dict:
    if inputs is None:
        return {None: [c for c in columns if c != target]}
    if isinstance(inputs, dict):
        groups = {str(k): [v] if isinstance(v, str) else list(v) for k, v in inputs.items()}
    else:
        groups = {None: [inputs] if isinstance(inputs, str) else list(inputs)}
    for cols in groups.values():
        for c in cols:
            if c not in columns:
                raise UserError(f"datasets data: no column '{c}' (columns: {', '.join(columns)})")
    return groups


class _Converter:
    """Columns of a batch (a dict of lists) -> numpy fields: inputs as float32 [n, ...], the target as class
    ids (text labels, by the training classes) or numbers."""

    def __init__(self, groups, target, classes):
        self.groups, self.target, self.classes = groups, target, classes
        self.index = {c: i for i, c in enumerate(classes or [])}

    def __call__(self, batch, where):
        fields = []
        for cols in self.groups.values():
            parts = []
            for c in cols:
                try:
                    a = np.asarray(batch[c], dtype=np.float32)
                except (ValueError, TypeError):
                    raise UserError(f"{where}: column '{c}' is not numbers (or lists of numbers of one length)") from None
                parts.append(a.reshape(len(a), -1) if len(cols) > 1 else (a[:, None] if a.ndim == 1 else a))
            fields.append(np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0])
        if self.target is not None:
            values = batch[self.target]
            if self.classes is not None:
                unknown = sorted({str(v) for v in values} - set(self.index))
                if unknown:
                    raise UserError(f"{where}: class(es) {', '.join(unknown[:5])} were not seen in training")
                fields.append(np.array([self.index[str(v)] for v in values], dtype=np.int64))
            else:
                a = np.asarray(values)
                fields.append(a.astype(np.int64) if a.dtype.kind in "iub" else a.astype(np.float32).reshape(len(a), -1))
        return fields


def _classes(stream, target):
    """Text class names (sorted) of the target column, or None for numbers; and the row count (one pass)."""
    names, count, text = set(), 0, False
    for batch in stream.select_columns([target]).iter(batch_size=4096):
        values = batch[target]
        count += len(values)
        if any(isinstance(v, str) for v in values):
            text = True
            names |= {str(v) for v in values}
    return (sorted(names) if text else None), count


def read_datasets(path, format=None, inputs=None, target=None, streaming=False, buffer=1000, input_names=None,
                  layout=None):
    """Every row of the files in memory, as `(fields, n_inputs, info)` (the non-streaming path)."""
    files, fmt = _files(path)
    stream = _stream(files, format or fmt)
    columns = list(stream.features or {}) if stream.features else list(next(iter(stream.take(1))).keys())
    layout = dict(layout or {})
    target = layout.get("target", target) if layout else target
    if target is not None and target not in columns:
        if layout:
            target = None  # predict on files without labels
        else:
            raise UserError(f"datasets data: no column '{target}' (columns: {', '.join(columns)})")
    groups = {(None if k == "" else k): v for k, v in layout["inputs"].items()} if layout.get("inputs") \
        else _groups(columns, inputs, target)
    classes = layout.get("classes") if layout else (_classes(stream, target)[0] if target else None)
    convert = _Converter(groups, target, classes)
    parts = [convert(b, files[0]) for b in stream.iter(batch_size=4096)]
    if not parts:
        raise UserError(f"datasets data: {files[0]} has no rows")
    fields = [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
    info = {"inputs": [k for k in groups], "layout": {"source": "datasets", "target": target, "classes": classes,
                                                      "inputs": {("" if k is None else k): v for k, v in groups.items()}}}
    if classes:
        info["classes"], info["num_classes"] = classes, len(classes)
    return fields, len(groups), info


class StreamedRows(Dataset):
    """One split read from its files each epoch: shuffled through a buffer, converted batch by batch."""

    def __init__(self, files, fmt, convert, n_rows, n_inputs, buffer, has_target):
        super().__init__(["stream"] * (n_inputs + has_target), n_inputs, rows=np.arange(n_rows))
        self.files, self.fmt, self.convert, self.buffer = files, fmt, convert, buffer
        self.epoch_seed = None

    def order(self, shuffle, seed, epoch, rank=0, world=1, even=True):
        if world > 1:
            raise UserError("train.data.streaming: one process only (a stream is not split across ranks)")
        self.epoch_seed = int(seed) * 1_000_003 + int(epoch) if shuffle else None
        return torch.arange(len(self))

    def batches(self, batch_size, order, drop_last=False):
        stream = _stream(self.files, self.fmt)
        if self.epoch_seed is not None:
            stream = stream.shuffle(seed=self.epoch_seed, buffer_size=self.buffer)
        for batch in stream.iter(batch_size=batch_size, drop_last_batch=drop_last):
            yield self._tensors(self.convert(batch, self.files[0]))

    def _gather(self, idx):
        n = len(idx)
        batch = next(iter(_stream(self.files, self.fmt).iter(batch_size=n)))
        return self._tensors(self.convert(batch, self.files[0]))

    def _tensors(self, arrays):
        if self.pick is not None:  # the network's inputs by name, then the target
            arrays = [arrays[i] for i in self.pick]
        out = []
        for a, shape in zip(arrays, self.sample_shapes):
            t = torch.from_numpy(a)
            out.append((t if shape is None else t.reshape(len(t), *shape)).to(self.device))
        return tuple(out)


def check_streaming(cfg) -> dict:
    """A `streaming: true` section's own rules (nothing read), or a one-line error naming the key."""
    per = cfg.get("files")
    if not isinstance(per, dict) or "train" not in per:
        raise UserError("train.data.streaming: give the splits as files: {train: ..., val: ...} (a stream is not "
                        "split by fractions)")
    for key in ("standardize", "standardize_target", "transform", "window"):
        if cfg.get(key):
            raise UserError(f"train.data.{key}: not with streaming: true (it would need a pass over the data first)")
    buffer = cfg.get("buffer", 1000)
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
        raise UserError(f"train.data.buffer: shuffle buffer in rows, a whole number >= 1, got {buffer!r}")
    return {"source": "datasets"}


def load_streaming(cfg, input_names=None):
    """The splits of a `streaming: true` source: `files: {train: ..., val: ..., test: ...}`."""
    check_streaming(cfg)
    per = cfg["files"]
    buffer = cfg.get("buffer", 1000)
    target = cfg.get("target")
    train_files, fmt = _files(per["train"])
    fmt = cfg.get("format") or fmt
    first = _stream(train_files, fmt)
    columns = list(first.features) if first.features else list(next(iter(first.take(1))).keys())
    if target is not None and target not in columns:
        raise UserError(f"datasets data: no column '{target}' (columns: {', '.join(columns)})")
    groups = _groups(columns, cfg.get("inputs"), target)
    classes, n_train = _classes(first, target) if target else (None, sum(1 for _ in first))
    convert = _Converter(groups, target, classes)
    splits = []
    for name in ("train", "val", "test"):
        if not per.get(name):
            splits.append(None)
            continue
        files, kind = _files(per[name])
        count = n_train if name == "train" else (_classes(_stream(files, fmt), target)[1] if target
                                                  else sum(1 for _ in _stream(files, fmt)))
        splits.append(StreamedRows(files, fmt, convert, count, len(groups), buffer, target is not None))
    layout = {"source": "datasets", "target": target, "classes": classes,
              "inputs": {("" if k is None else k): v for k, v in groups.items()}}
    info = {"inputs": list(groups), "layout": layout}
    if classes:
        info["classes"], info["num_classes"] = classes, len(classes)
    return Data(*splits, info=info)


def for_model(path, layout, input_names):
    """Files in the training files' columns (predict, evaluate)."""
    fields, n_inputs, info = read_datasets(path, layout=layout)
    return fields[:n_inputs], info["inputs"], (fields[n_inputs] if len(fields) > n_inputs else None)


class DatasetsSource(Source):
    """`source: datasets`: with `streaming: true` it builds its own splits (StreamedRows); without, its rows
    go through builder.data.load_data like any reader's (read_datasets)."""

    name, keys = "datasets", ("path", "format", "inputs", "target", "streaming", "buffer")

    @staticmethod
    def builds_splits(cfg) -> bool:
        return bool(cfg.get("streaming"))

    def check(self, cfg):
        return check_streaming(cfg) if cfg.get("streaming") else {"source": "datasets"}

    def load(self, cfg, input_names=None):
        return load_streaming(cfg, input_names)

    def for_model(self, path, layout, input_names):
        return for_model(path, layout, input_names)


SOURCE = DatasetsSource()
