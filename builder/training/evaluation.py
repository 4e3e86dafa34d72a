"""`build evaluate`: a trained model's metrics on a labelled file, computed with scikit-learn's metrics.

Classification: accuracy, per-class precision/recall/F1/support, macro and weighted F1, ROC AUC (two
classes), and the confusion matrix (rows: true class, columns: predicted; `confusion_matrix.csv` and
`.png`). Regression: mse, mae and r2 in the data's units. Everything lands in `metrics.json`.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from builder.core import csv_cells
from builder.core.io_utils import atomic_write_bytes, atomic_write_text


def is_classifier(first: np.ndarray, truth: np.ndarray) -> bool:
    return first.ndim == 2 and first.shape[1] > 1 and truth.dtype.kind in "iu"


def softmax(logits: np.ndarray) -> np.ndarray:
    x = np.exp(logits - logits.max(axis=1, keepdims=True))
    return x / x.sum(axis=1, keepdims=True)


def check_class_ids(truth: np.ndarray, n_classes: int, source: str) -> None:
    """True class ids must be ids of the model's classes: one outside [0, C) would count against the
    accuracy yet fall outside the confusion matrix (two numbers that disagree without a word)."""
    from builder.core.errors import UserError

    truth = np.asarray(truth).reshape(-1)
    bad = (truth < 0) | (truth >= n_classes)
    if bad.any():
        first = int(np.argmax(bad))
        values = sorted({int(v) for v in truth[bad]})
        raise UserError(f"{source}: {int(bad.sum())} label(s) outside the model's {n_classes} classes "
                        f"(ids 0..{n_classes - 1}): {', '.join(map(str, values[:8]))}"
                        f"{' ...' if len(values) > 8 else ''}, the first in sample {first}; drop those samples "
                        "or map them to the training classes")


def classification_metrics(logits: np.ndarray, truth: np.ndarray, labels: list[str]):
    """(metrics, confusion matrix) of class scores (N, C) against true ids (N,), each in [0, C)
    (check_class_ids)."""
    from sklearn import metrics as skm

    truth = truth.reshape(-1)
    guess = logits.argmax(axis=1)
    ids = list(range(logits.shape[1]))
    precision, recall, f1, support = skm.precision_recall_fscore_support(truth, guess, labels=ids, zero_division=0)
    out = {
        "rows": int(len(truth)),
        "accuracy": float(skm.accuracy_score(truth, guess)),
        "f1_macro": float(skm.f1_score(truth, guess, labels=ids, average="macro", zero_division=0)),
        "f1_weighted": float(skm.f1_score(truth, guess, labels=ids, average="weighted", zero_division=0)),
        "per_class": {labels[i]: {"precision": float(precision[i]), "recall": float(recall[i]),
                                  "f1": float(f1[i]), "support": int(support[i])} for i in ids},
    }
    if len(ids) == 2 and len(set(truth.tolist())) == 2:
        out["roc_auc"] = float(skm.roc_auc_score(truth, softmax(logits.astype(np.float64))[:, 1]))
    return out, skm.confusion_matrix(truth, guess, labels=ids)


def regression_metrics(pred: np.ndarray, truth: np.ndarray) -> dict:
    from sklearn import metrics as skm

    pred, truth = pred.reshape(len(pred), -1), truth.reshape(len(truth), -1)
    return {"rows": int(len(truth)), "mse": float(skm.mean_squared_error(truth, pred)),
            "mae": float(skm.mean_absolute_error(truth, pred)), "r2": float(skm.r2_score(truth, pred))}


def write_report(out_dir, metrics: dict, matrix=None, labels=None) -> list[Path]:
    """metrics.json, and for a classifier confusion_matrix.csv and .png, in `out_dir` (atomically each)."""
    out_dir = Path(out_dir)
    written = [out_dir / "metrics.json"]
    atomic_write_text(written[0], json.dumps(metrics, indent=2) + "\n")
    if matrix is not None:
        text = io.StringIO()
        writer = csv_cells.writer(text, lineterminator="\n")
        writer.writerow(["true \\ predicted"] + list(labels))
        for name, row in zip(labels, matrix):
            writer.writerow([name] + [int(v) for v in row])
        atomic_write_text(out_dir / "confusion_matrix.csv", text.getvalue())
        atomic_write_bytes(out_dir / "confusion_matrix.png", _matrix_png(matrix, labels))
        written += [out_dir / "confusion_matrix.csv", out_dir / "confusion_matrix.png"]
    return written


def _matrix_png(matrix, labels) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(matrix, display_labels=list(labels)).plot(ax=ax, colorbar=False,
                                                                     xticks_rotation="vertical")
    ax.set_title("confusion matrix (rows: true class)")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    return png.getvalue()
