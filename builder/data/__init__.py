"""`train.data`: read a source, split it, standardise from training statistics, batch it.

    data: {source: digits, split: [0.8, 0.1, 0.1], batch_size: 64, shuffle: true, seed: 0,
           standardize: true, transform: {resize: [28, 28], normalize: true}}

Sources: toy_linear, xor, sine, tril, digits, text (built in); csv, npz, npy, idx (files). Either `split`
(fractions of one source) or `files: {train: ..., val: ..., test: ...}` (one file, or one dict of reader
arguments, per split). Any other key is an argument of the source (`n`, `noise`, `path`, `target`, ...).
"""
from __future__ import annotations

import inspect

import numpy as np
import torch
import torch.nn.functional as F

from builder.core.choices import pick
from builder.core.errors import UserError, did_you_mean
from builder.data import files, hf_files, images, sources, text_columns, windows
from builder.data.dataset import COMMON_KEYS, Data, Dataset, split_rows

READERS = {
    **sources.BUILTIN,
    "csv": files.read_csv,
    "npz": files.read_npz,
    "npy": files.read_npy,
    "idx": files.read_idx_pair,
    "datasets": hf_files.read_datasets,
}
SOURCES = {s.name: s for s in (images.SOURCE, hf_files.SOURCE)}  # builder.data.source.Source objects
STREAM_BYTES = 512 * 2**20  # memmapped data larger than this is streamed by default


def check_data(cfg: dict):
    """The reader and its arguments for `cfg`, or a one-line error (nothing is read)."""
    name = cfg.get("source")
    if name in SOURCES and SOURCES[name].builds_splits(cfg) and name not in READERS:
        return SOURCES[name].check(cfg), None
    reader = pick({**SOURCES, **READERS}, name, "train.data.source", "source")
    args = {k: v for k, v in cfg.items() if k not in COMMON_KEYS}
    if name == "csv" and (cfg.get("text") or any(k in args for k in text_columns.KEYS)):
        text_columns.check(cfg)
        args = {k: v for k, v in args.items() if k not in text_columns.KEYS}
    _check_args(name, reader, args)
    if args.get("tokenizer") is not None:
        from builder.data.tokenizer import check_config
        check_config(args["tokenizer"])
    Preparation(cfg)  # checks the transform keys
    _window(cfg, name)
    if name in SOURCES:
        SOURCES[name].check(cfg)  # its own rules beside the reader's arguments (datasets' streaming)
    return reader, args


def load_data(cfg: dict, input_names=None) -> Data:
    """Build the splits that `cfg` (the spec's `train.data` section) describes; `input_names` (the
    network's) let a source pick its arrays by name (builder.data.naming)."""
    cfg = dict(cfg or {})
    name = cfg.get("source")
    if name in SOURCES and SOURCES[name].builds_splits(cfg):
        check_data(cfg)
        return SOURCES[name].load(cfg, input_names)
    reader, args = check_data(cfg)
    if input_names and "input_names" in inspect.signature(reader).parameters:
        args["input_names"] = list(input_names)
    if name in sources.BUILTIN:
        args.setdefault("seed", cfg.get("seed", 0))
    if name == "text" and args.get("tokenizer") and "files" in cfg:
        raise UserError("train.data.tokenizer needs one text split by `split:`; with `files:` every split "
                        "would train its own tokenizer")
    if name == "text" and "files" not in cfg:  # cut by position before windowing (windows overlap)
        args["split"] = cfg.get("split", [0.8, 0.1, 0.1])

    window = _window(cfg, name)
    if "files" in cfg:
        raws, info = _read_per_split(name, reader, args, cfg["files"], cfg)
        if window:
            had_target = len(raws[0][0]) > raws[0][1]
            raws = [None if r is None else ([*windows.cut(*windows.series(r[0], r[1], window), window,
                                                          f"train.data.files.{s}")], 1, None)
                    for r, s in zip(raws, ("train", "val", "test"))]
    elif window:
        fields, n_inputs, info = reader(**args)
        check_fields(fields, n_inputs, f"train.data ({name})")
        had_target = len(fields) > n_inputs
        raws = windows.split(fields, n_inputs, window, cfg.get("split", [0.8, 0.1, 0.1]))
    else:
        fields, n_inputs, info = reader(**args)
        fractions = cfg.get("split", [0.8, 0.1, 0.1])
        rows = info.pop("split_rows", None)  # a source of overlapping windows splits itself by position
        if rows is None:
            rows = split_rows(len(fields[-1]), fractions, cfg.get("seed", 0), cfg.get("split_shuffle", True))
        fields, n_inputs = text_columns.add_fields(fields, n_inputs, info, rows[0], text_columns.check(cfg)
                                                   if info.get("text") else None)
        check_fields(fields, n_inputs, f"train.data ({name})")
        raws = [(fields, n_inputs, r) for r in rows] + [None] * (3 - len(rows))

    stream = cfg.get("stream", "auto")
    if stream == "auto":
        stream = all(isinstance(f, np.memmap) for f in raws[0][0]) and \
            sum(f.nbytes for f in raws[0][0]) > STREAM_BYTES
    prep = Preparation(cfg)
    prep.fit(raws[0], stream)
    splits = [None if r is None else prep.dataset(r, stream) for r in raws]
    if window:
        info["layout"] = {**(info.get("layout") or {"source": name}), "window": window,
                          "had_target": had_target}
        info["inputs"] = [None]
    info.setdefault("inputs", [None] * raws[0][1])
    info["input_statistics"] = {i: stats for i, stats in prep.stats.items() if i < raws[0][1]
                                and not prep.resize}  # a resize changes the sample shape: not foldable
    target_stats = prep.stats.get(raws[0][1])
    if target_stats is not None and prep.standardize_target:
        info["target_statistics"] = target_stats  # the trainer's metrics and the deployed model undo it
    if name == "text":
        info["unigram_perplexity"] = sources.unigram_perplexity(
            _rows(raws[0][0][1], raws[0][2]), info["vocab_size"])
    return Data(*splits, info=info)


def _window(cfg, name):
    """`window:` checked (CSV and NPY sources only), or None."""
    if cfg.get("window") is None:
        return None
    if name not in ("csv", "npy"):
        raise UserError(f"train.data.window: windows are cut from csv or npy series, not from source {name!r}")
    return windows.check(cfg["window"])


def check_fields(fields, n_inputs, where, chunk=1 << 16) -> None:
    """Data the trainer can use, or a one-line error: numbers (not text or objects), at least one sample,
    as many rows in every field, and no NaN or Inf (they would turn the loss into NaN on the first batch
    that holds one; we refuse them up front, naming the first row). Memmaps are scanned in chunks."""
    names = [f"input {i}" if n_inputs > 1 else "input" for i in range(n_inputs)] + ["target"] * (len(fields) - n_inputs)
    for name, f in zip(names, fields):
        dtype = np.asarray(f[:0]).dtype
        if dtype.kind not in "biuf":
            raise UserError(f"{where}: the {name} is {dtype} data; only real numbers (bool, int, float) can be trained on "
                            "(text columns belong in a csv source, which one-hot encodes them)")
        if np.ndim(f) == 0:
            raise UserError(f"{where}: the {name} is a single number, not an array of samples")
    lengths = [len(f) for f in fields]
    if not lengths or lengths[0] == 0:
        raise UserError(f"{where}: no samples (the data is empty)")
    if len(set(lengths)) > 1:
        raise UserError(f"{where}: the fields have different numbers of samples: "
                        + ", ".join(f"{n} {k}" for n, k in zip(names, lengths)))
    for name, f in zip(names, fields):
        if np.asarray(f[:0]).dtype.kind != "f":
            continue
        for start in range(0, len(f), chunk):
            part = np.asarray(f[start:start + chunk])
            bad = ~np.isfinite(part.reshape(len(part), -1)).all(axis=1)
            if bad.any():
                row = start + int(np.argmax(bad))
                count = sum(int((~np.isfinite(np.asarray(f[s:s + chunk]))).sum()) for s in range(0, len(f), chunk))
                raise UserError(f"{where}: the {name} holds {count:,} NaN or Inf value(s), the first in sample "
                                f"{row}; remove or fill them before training")


def _check_args(name, reader, args):
    known = set(inspect.signature(reader).parameters) - {"seed", "layout", "rows", "input_names"}  # rows: build serve's tables
    for key in args:
        if key not in known:
            hint = did_you_mean(key, known | COMMON_KEYS)
            raise UserError(f"train.data: source {name!r} takes no key {key!r}"
                            + (f" ({hint})" if hint else f"; it takes {', '.join(sorted(known)) or 'none'}"))


def _read_per_split(name, reader, args, per_split, cfg):
    """`files: {train: a.csv, test: b.csv}`: one reader call per split; CSV kinds, categories, classes and fills come from train."""
    if not isinstance(per_split, dict) or "train" not in per_split:
        raise UserError("train.data.files must map train (and optionally val, test) to a file or reader args")
    unknown = set(per_split) - {"train", "val", "test"}
    if unknown:
        raise UserError(f"train.data.files: unknown split(s) {sorted(unknown)}; use train, val, test")
    raws, info = [], {}
    for split in ("train", "val", "test"):
        spec = per_split.get(split)
        if spec is None:
            raws.append(None)
            continue
        call = dict(args, **(spec if isinstance(spec, dict) else {_first_path_arg(reader): spec}))
        if "layout" in inspect.signature(reader).parameters and split != "train":
            call["layout"] = info.get("layout")
        fields, n_inputs, got = reader(**call)
        if got.get("text"):
            fields, n_inputs = text_columns.add_fields(fields, n_inputs, got, None, text_columns.check(cfg))
        check_fields(fields, n_inputs, f"train.data.files.{split} ({name})")
        info = info or got
        raws.append((fields, n_inputs, None))
    return raws, info


def _first_path_arg(reader):
    return next(iter(inspect.signature(reader).parameters))


def _rows(array, rows):
    return array if rows is None else array[np.sort(rows)]


class Preparation:
    """Turns raw numpy rows into model-ready tensors: dtype, resize, standardise/normalise.

    Statistics come from the training split only, so validation and test see the same transform."""

    def __init__(self, cfg):
        transform = dict(cfg.get("transform") or {})
        unknown = set(transform) - {"resize", "normalize"}
        if unknown:
            raise UserError(f"train.data.transform: unknown key(s) {sorted(unknown)}; known: resize, normalize")
        self.resize = transform.get("resize")
        if isinstance(self.resize, int):
            self.resize = [self.resize, self.resize]
        self.normalize = transform.get("normalize", False)
        self.standardize = cfg.get("standardize", False)
        self.standardize_target = cfg.get("standardize_target", False)
        self.stats = {}  # field index -> (mean, std)

    def fit(self, raw, stream):
        fields, n_inputs, rows = raw
        wanted = {}
        for i in range(len(fields)):
            if i < n_inputs and self.standardize:
                wanted[i] = "feature"
            elif i < n_inputs and self.normalize is True:
                wanted[i] = "scalar"
            elif i >= n_inputs and self.standardize_target:
                wanted[i] = "feature"
        if isinstance(self.normalize, (list, tuple)):
            for i in range(n_inputs):
                self.stats[i] = (torch.tensor(float(self.normalize[0])), torch.tensor(float(self.normalize[1])))
        for i, kind in wanted.items():
            self.stats[i] = self._moments(fields, n_inputs, rows, i, kind, stream)

    def _moments(self, fields, n_inputs, rows, i, kind, stream):
        """Mean and std of field i over the training rows, in chunks when the data is streamed."""
        rows = np.arange(len(fields[i])) if rows is None else np.sort(rows)
        chunk = 65536 if stream else len(rows)
        total, total_sq, count = 0.0, 0.0, 0
        for s in range(0, len(rows), chunk):
            t = self.tensors([np.asarray(f[rows[s:s + chunk]]) for f in fields], n_inputs, raw=True)[i].double()
            dims = (0,) if kind == "feature" else tuple(range(t.dim()))
            total = total + t.sum(dims)
            total_sq = total_sq + (t * t).sum(dims)
            count += t.numel() // (t[0].numel() if kind == "feature" else 1)
        mean = total / count
        std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
        std = torch.where(std < 1e-6, torch.ones_like(std), std)  # a constant pixel stays as it is
        return mean.float(), std.float()

    def tensors(self, arrays, n_inputs, raw=False):
        out = []
        for i, a in enumerate(arrays):
            t = _to_tensor(a)
            if i < n_inputs and self.resize and t.dim() == 4 and t.is_floating_point():
                t = F.interpolate(t, size=tuple(self.resize), mode="bilinear", align_corners=False)
            if not raw and i in self.stats:
                mean, std = self.stats[i]
                t = (t - mean) / std
            out.append(t)
        return out

    def dataset(self, raw, stream) -> Dataset:
        fields, n_inputs, rows = raw
        if stream:
            rows = np.arange(len(fields[0])) if rows is None else np.sort(rows)  # as `_rows` orders them
            return Dataset(fields, n_inputs, rows=rows, prepare=lambda arrays: self.tensors(arrays, n_inputs))
        return Dataset(self.tensors([_rows(f, rows) for f in fields], n_inputs), n_inputs)


def _to_tensor(a) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1]; other floats -> float32; integers -> int64 (class ids, tokens)."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255
    elif np.issubdtype(a.dtype, np.floating):
        a = np.ascontiguousarray(a, dtype=np.float32)
    else:
        a = np.ascontiguousarray(a, dtype=np.int64)
    if not a.flags.writeable:  # a read-only memmap or buffer: torch wants memory it may write
        a = a.copy()
    return torch.from_numpy(a)


__all__ = ["Data", "Dataset", "check_data", "load_data", "split_rows"]
