"""`build predict`: run an exported ONNX file with onnxruntime, or a spec with torch, over an input file.

    runner = OnnxRunner("lenet5.onnx", provider="auto")        # or TorchRunner(module, labels=...)
    arrays = inputs.conform(inputs.read_arrays("x.npy", runner.inputs), runner.inputs, "x.npy")
    outputs = predict(runner, arrays, batch_size=64)            # dict output name -> array
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import torch
from builder.core import csv_cells
from builder.core.errors import UserError
from builder.core.io_utils import atomic_output, check_writable
from builder.core.types import build_info

from . import metadata, runtime
from .inputs import ModelInput

_ORT_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool",
              "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


class OnnxRunner:
    def __init__(self, path, provider: str = "auto", threads: int | None = None):
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no such ONNX file")
        try:
            props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        except Exception as e:  # protobuf's DecodeError and friends
            raise UserError(f"{path}: not an ONNX model ({type(e).__name__})") from None
        self.meta = metadata.read_metadata(props, str(path))
        self.session = runtime.session(path, provider, threads)
        self.device = runtime.provider_of(self.session)
        ranges = {i["name"]: i.get("value_range") for i in self.meta.get("inputs", []) if isinstance(i, dict)}
        self.inputs = [ModelInput(i.name, tuple(d if isinstance(d, int) else (d or None) for d in i.shape),
                                  _ORT_TYPES.get(i.type, "float32"),
                                  tuple(ranges[i.name]) if ranges.get(i.name) else None)
                       for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.outputs = [ModelInput(o.name, tuple(d if isinstance(d, int) else (d or None) for d in o.shape),
                                   _ORT_TYPES.get(o.type, "float32")) for o in self.session.get_outputs()]
        self.labels = self.meta.get("class_labels")
        if not self.labels:  # a language model: its tokens, decoded
            from builder.data.tokenizer import from_metadata, token_labels
            tok = from_metadata(self.meta)
            self.labels = token_labels(tok) if tok is not None else None
        self.layout = (self.meta.get("data") or {}).get("layout")  # a CSV's columns (builder.data)

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(None, feed)
        except Exception as e:  # onnxruntime's own exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"onnxruntime failed: {first}") from None


class TorchRunner:
    """The same interface over a torch module (a builder.build GraphModule), for comparison."""

    def __init__(self, module: torch.nn.Module, labels=None, device: str = "auto", layout=None):
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            raise UserError("--provider cuda: torch sees no GPU on this machine; use --provider cpu")
        self.device = device
        self.module = module.eval().to(device)
        self.inputs = [ModelInput(t.name, tuple(d if isinstance(d, int) else str(d) for d in t.shape),
                                  "int64" if t.dtype in ("long", "int") else (t.dtype or "float32"),
                                  tuple(t.value_range) if getattr(t, "value_range", None) else None)
                       for t in build_info(module).inputs]
        self.output_names = list(build_info(module).outputs)
        self.labels = labels
        self.layout = layout

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feed[i.name])).to(self.device) for i in self.inputs]
        with torch.inference_mode():
            out = self.module(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().cpu().numpy() for o in outs]


def batch_limit(runner) -> int | None:
    """A static batch dim (every input's first dim the same number) caps the batch size."""
    firsts = {i.shape[0] for i in runner.inputs if i.shape}
    return next(iter(firsts)) if len(firsts) == 1 and isinstance(next(iter(firsts)), int) else None


def predict(runner, arrays: dict[str, np.ndarray], batch_size: int = 64) -> dict[str, np.ndarray]:
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    n = len(next(iter(arrays.values())))
    fixed = batch_limit(runner)
    if fixed is not None:
        if n % fixed:
            raise UserError(f"the model takes batches of exactly {fixed} samples, the input has {n}")
        batch_size = fixed
    chunks: list[list[np.ndarray]] = []
    for start in range(0, n, batch_size):
        chunks.append(runner.run({k: v[start:start + batch_size] for k, v in arrays.items()}))
    names = runner.output_names or [f"output{i}" for i in range(len(chunks[0]))]
    return {name: np.concatenate([c[k] for c in chunks], axis=0) for k, name in enumerate(names)}


def top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and softmax probabilities of the k largest scores per row of an (N, C) array."""
    k = max(1, min(k, logits.shape[1]))
    x = logits.astype(np.float64)
    x = np.exp(x - x.max(axis=1, keepdims=True))
    probs = x / x.sum(axis=1, keepdims=True)
    idx = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(probs, idx, axis=1)


def format_predictions(outputs: dict[str, np.ndarray], labels=None, k: int = 1, limit: int = 20) -> str:
    """Top-k labels per sample for a classifier (first output of shape (N, C)) or a language model (the
    next token after the last position of (N, T, V) logits), else a shape summary."""
    name, first = next(iter(outputs.items()))
    lines = []
    if first.ndim == 3 and first.shape[2] > 1 and first.dtype.kind == "f":
        first = first[:, -1]
        lines.append("next token after the last position:")
    if first.ndim == 2 and first.shape[1] > 1 and first.dtype.kind == "f":
        idx, probs = top_k(first, k)
        for row in range(min(len(first), limit)):
            parts = [f"{class_name(labels, int(c))} ({p:.3f})" for c, p in zip(idx[row], probs[row])]
            lines.append(f"{row}: " + ", ".join(parts))
        if len(first) > limit:
            lines.append(f"... {len(first) - limit} more (write them all with -o OUT.npy or OUT.csv)")
    else:
        for out_name, arr in outputs.items():
            lines.append(f"{out_name}: {arr.dtype.name} {list(arr.shape)}"
                         + (f" = {np.array2string(arr.ravel()[:8], precision=4)}" if arr.size else ""))
        lines.append("(write the arrays with -o OUT.npy, OUT.npz or OUT.csv)")
    return "\n".join(lines)


def class_name(labels, index: int) -> str:
    if labels and 0 <= index < len(labels):
        return str(labels[index])
    return str(index)


def is_classifier(first: np.ndarray) -> bool:
    return first.ndim == 2 and first.shape[1] > 1 and first.dtype.kind == "f"


def score(first: np.ndarray, truth: np.ndarray) -> str:
    """Accuracy of a classifier's top class, or R2 and MAE of a regression, against a file's labels."""
    truth = np.asarray(truth)
    if truth.dtype.kind == "f":  # a series' last windows forecast past its end: not scored
        known = np.isfinite(truth.reshape(len(truth), -1)).all(axis=1)
        first, truth = first[known], truth[known]
    if is_classifier(first) and truth.dtype.kind in "iub":
        hits = first.argmax(axis=1) == truth.reshape(-1)
        return f"accuracy {hits.mean():.4f} ({int(hits.sum())} of {len(hits)} rows)"
    pred, truth = first.reshape(len(first), -1).astype(np.float64), truth.reshape(len(first), -1)
    total = ((truth - truth.mean(axis=0)) ** 2).sum()
    r2 = 1 - ((pred - truth) ** 2).sum() / total if total > 0 else float("nan")
    return f"r2 {r2:.4f}  mae {np.abs(pred - truth).mean():.4g} ({len(pred)} rows)"


def write_outputs(outputs: dict[str, np.ndarray], path, labels=None) -> Path:
    """.npy (the first output, raw), .npz (all), .csv (the first output, one row per sample: a header,
    `prediction` (class name, or value) and for a classifier `prob_<class>` per class); atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz", ".csv"):
        raise UserError(f"-o {path}: expected a .npy, .npz or .csv file name")
    first = next(iter(outputs.values()))
    with atomic_output(check_writable(path)) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, first)
        elif suffix == ".npz":
            with open(tmp, "wb") as f:
                np.savez(f, **outputs)
        else:
            tmp.write_text(_table(first, labels))
    return path


def _table(first: np.ndarray, labels) -> str:
    buf = io.StringIO()
    writer = csv_cells.writer(buf, lineterminator="\n")
    if is_classifier(first):
        names = [class_name(labels, i) for i in range(first.shape[1])]
        _, probs = top_k(first, first.shape[1])
        order = np.argsort(-first, axis=1, kind="stable")
        writer.writerow(["prediction"] + [f"prob_{n}" for n in names])
        for row in range(len(first)):
            p = np.empty(first.shape[1])
            p[order[row]] = probs[row]
            writer.writerow([names[order[row, 0]]] + [f"{v:.6g}" for v in p])
        return buf.getvalue()
    flat = first.reshape(len(first), -1) if first.ndim > 1 else first[:, None]
    writer.writerow(["prediction"] if flat.shape[1] == 1 else [f"prediction_{i}" for i in range(flat.shape[1])])
    fmt = "{:d}" if flat.dtype.kind in "iub" else "{:.8g}"
    for row in flat:
        writer.writerow([fmt.format(v.item()) for v in row])
    return buf.getvalue()
