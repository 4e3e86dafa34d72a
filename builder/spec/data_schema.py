"""The JSON Schema of `train.data`: every key a source takes, one line each (the schema is generated before
the data stage exists, so the keys are listed here; tests/test_data_schema.py checks that every source's
arguments and keys are among them)."""
from __future__ import annotations

_EXPR = {"type": "string", "pattern": r"\$\{.*\}"}
_NUM = {"anyOf": [{"type": "number"}, _EXPR]}
_INT = {"anyOf": [{"type": "integer"}, _EXPR]}
_BOOL = {"anyOf": [{"type": "boolean"}, _EXPR]}
_STR = {"type": "string"}
_NAMES = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_SIZE = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "array", "items": {"type": "integer", "minimum": 1},
                                                       "minItems": 2, "maxItems": 2}]}
_GROUPS = {"anyOf": [{"type": "array", "items": {"type": "string"}},
                     {"type": "object", "additionalProperties": _NAMES}]}


def _d(schema, description):
    return {**schema, "description": description}


COMMON = {
    "source": _d(_STR, "where the data comes from: toy_linear, xor, sine, tril, digits, text, csv, npz, npy, idx, images, datasets"),
    "split": _d({"type": "array", "items": {"type": "number"}}, "fractions for train, val, test (default [0.8, 0.1, 0.1]); by time with window"),
    "files": _d({"type": "object"}, "one file (or folder, or reader arguments) per split: {train: ..., val: ..., test: ...}"),
    "batch_size": _d(_INT, "samples per training step (default 64)"),
    "eval_batch_size": _d(_INT, "samples per validation/test batch"),
    "shuffle": _d(_BOOL, "shuffle the training samples every epoch (default true)"),
    "seed": _d(_INT, "seeds the split, the shuffling and the augmentation"),
    "drop_last": _d(_BOOL, "drop a last, smaller training batch"),
    "standardize": _d(_BOOL, "inputs to (x - mean) / std of the training split; carried into the exported model"),
    "standardize_target": _d(_BOOL, "train on standardised targets; the exported model answers in data units"),
    "transform": _d({"type": "object"}, "{resize: [H, W], normalize: true | [mean, std]} on array images"),
    "stream": _d({"anyOf": [{"type": "boolean"}, {"const": "auto"}]}, "read memmapped arrays batch by batch (default auto: over 512 MiB)"),
    "split_shuffle": _d(_BOOL, "shuffle rows before splitting (default true)"),
    "window": _d({"type": "object", "additionalProperties": False, "properties": {
        "lookback": _d(_INT, "time steps a sample sees"),
        "horizon": _d(_INT, "time steps it forecasts (default 1)"),
        "stride": _d(_INT, "steps between training windows (default 1)"),
        "target_as_input": _d(_BOOL, "the target's past values are inputs too (default true)")}},
        "csv/npy series cut into windows after a split by time"),
}

SOURCE_KEYS = {
    # built-in sources
    "n": _d(_INT, "toy sources: number of samples"),
    "noise": _d(_NUM, "toy sources: noise level"),
    "weights": _d({"type": "array"}, "toy_linear: the true weights"),
    "bias": _d(_NUM, "toy_linear: the true bias"),
    "low": _d(_NUM, "toy_linear, tril: smallest value"),
    "high": _d(_NUM, "toy_linear, tril: largest value"),
    "target": _d({"anyOf": [_NAMES, {"type": "null"}]}, "csv, datasets: the target column(s); xor: class or float"),
    "tau": _d(_INT, "sine: window length"),
    "step": _d(_NUM, "sine: time step"),
    "size": _d(_INT, "tril: matrix size"),
    "seq_len": _d(_INT, "text: tokens per language-model window"),
    "stride": _d(_INT, "text: tokens between windows (default seq_len)"),
    "encoding": _d(_STR, "text: the file's encoding (default utf-8)"),
    "tokenizer": _d({"anyOf": [{"type": "object"}, _STR]},
                    "text: {type: bpe, vocab_size: N}; csv text columns: {type: wordpiece|bpe, vocab_size: N} or a tokenizer.json"),
    "train_fraction": _d(_NUM, "text: the part of the text its tokenizer is trained on (set by the trainer)"),
    # files
    "path": _d({"anyOf": [_STR, {"type": "array", "items": _STR}]}, "the file, folder or glob to read"),
    "categorical": _d(_NAMES, "csv: columns one-hot encoded even if numeric"),
    "drop": _d(_NAMES, "csv: columns left out"),
    "delimiter": _d(_STR, "csv: one character (default ,)"),
    "missing": _d({"enum": ["error", "drop", "mean"]}, "csv: what a missing cell does (default error)"),
    "inputs": _d(_GROUPS, "csv, datasets: input columns, or {input name: [columns or patterns]} for several inputs"),
    "text": _d(_NAMES, "csv: free-text columns tokenised into <column> ids and <column>_mask"),
    "max_length": _d(_INT, "csv text columns: tokens per text (default 64)"),
    "x": _d(_STR, "npz: the input array's name (default x, or arrays named like the inputs); npy: the inputs file"),
    "y": _d(_STR, "npz: the target array's name (default y); npy: the targets file"),
    "classes": _d(_STR, "npz: the array naming the class ids (default classes)"),
    "images": _d(_STR, "idx: the images file"),
    "labels": _d(_STR, "idx: the labels file"),
    # images
    "resize": _d(_SIZE, "images: resize every image to [H, W] (or N x N)"),
    "crop": _d(_SIZE, "images: centre crop after the resize"),
    "mode": _d({"enum": ["RGB", "L"]}, "images: colour (3 channels, default) or greyscale (1)"),
    "normalize": _d({"type": "object", "required": ["mean", "std"], "additionalProperties": False,
                     "properties": {"mean": {"type": "array"}, "std": {"type": "array"}}},
                    "images: per-channel mean and std on [0, 1] pixels; the exported model's first op"),
    "augment": _d({"type": "object", "additionalProperties": False, "properties": {
        "flip": _d(_BOOL, "random horizontal flip"),
        "crop": _d(_INT, "random crop of the image padded by this many pixels"),
        "color": _d(_NUM, "brightness and contrast jitter, 0..1")}}, "images: training-only augmentation"),
    "workers": _d(_INT, "images: DataLoader worker processes decoding batches (default 0)"),
    # datasets
    "format": _d({"enum": ["parquet", "json", "arrow", "csv"]}, "datasets: the files' kind when the suffix does not say"),
    "streaming": _d(_BOOL, "datasets: one pass over the files per epoch, never all in memory"),
    "buffer": _d(_INT, "datasets streaming: rows in the shuffle buffer (default 1000)"),
}


def data_schema() -> dict:
    return {"anyOf": [{"type": "string"}, {"type": "object", "additionalProperties": False,
                                           "properties": {**COMMON, **SOURCE_KEYS}}],
            "description": "the training data: a source name, or {source: ..., its keys}"}
