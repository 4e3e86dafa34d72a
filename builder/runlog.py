"""The run folder `runs/<name>/` and what is written into it, all from rank 0.

    spec.yaml      the spec text as given          resolved.yaml  name, params, resolved train section
    metrics.csv    one row per epoch               last.pt/best.pt checkpoints (see checkpoint.py)
    curves.png     losses and metrics per epoch    test.json      final test metrics

metrics.csv is reproducible: the same seed gives the same file, except its last column, `seconds`
(wall time of the epoch), which no two runs share; compare runs on the other columns.
"""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import yaml

from .errors import UserError


class RunFolder:
    def __init__(self, path, enabled=True):
        self.path = Path(path)
        self.enabled = enabled
        self._csv = None  # (open file, DictWriter) of metrics.csv
        if enabled:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(f"cannot create run folder {self.path}: {e.strerror}") from None

    def __truediv__(self, name) -> Path:
        return self.path / name

    def write_spec(self, spec_text, resolved: dict) -> None:
        if not self.enabled:
            return
        if spec_text is not None:
            (self.path / "spec.yaml").write_text(spec_text, encoding="utf-8")
        (self.path / "resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")

    def write_metrics(self, history: list[dict]) -> None:
        """Add the newest row to metrics.csv; the whole file is written when it is first opened (after a
        resume too) or when the columns change. The file stays open: an epoch may take milliseconds."""
        if not self.enabled or not history:
            return
        if self._csv is None or set(history[-1]) - set(self._csv[1].fieldnames):
            columns = []
            for row in history:
                columns += [k for k in row if k not in columns and k != "seconds"]
            columns.append("seconds")
            self.close()
            f = open(self.path / "metrics.csv", "w", newline="")
            self._csv = (f, csv.DictWriter(f, fieldnames=columns))
            self._csv[1].writeheader()
            rows = history
        else:
            rows = history[-1:]
        for row in rows:
            self._csv[1].writerow({k: _fmt(v) for k, v in row.items()})
        self._csv[0].flush()

    def close(self) -> None:
        if self._csv is not None:
            self._csv[0].close()
            self._csv = None

    def write_json(self, name, data) -> None:
        if self.enabled:
            (self.path / name).write_text(json.dumps(data, indent=2) + "\n")

    def plot(self, history: list[dict]) -> None:
        """curves.png: one panel for the losses, one per other metric, x = epoch."""
        if not self.enabled or not history:
            return
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = [k for k in history[-1] if k not in ("epoch", "seconds", "lr")]
        losses = [k for k in keys if k.endswith("loss")]
        others = sorted({k.split(".", 1)[-1] for k in keys if k not in losses})
        panels = [("loss", losses)] + [(m, [k for k in keys if k.split(".", 1)[-1] == m]) for m in others]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
        epochs = [r["epoch"] for r in history]
        for ax, (title, series) in zip(axes[0], panels):
            for k in series:
                ax.plot(epochs, [r.get(k, math.nan) for r in history], label=k, marker="." if len(epochs) < 30 else None)
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.legend()
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.path / "curves.png", dpi=100)
        plt.close(fig)


def read_resolved(run_dir) -> dict:
    path = Path(run_dir) / "resolved.yaml"
    if not path.exists():
        raise UserError(f"--resume {run_dir}: not a run folder (no resolved.yaml)")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


class Console:
    """What the user sees: a tqdm bar per epoch (unless quiet) and, with log_json, one JSON line per epoch."""

    def __init__(self, quiet=False, log_json=False, enabled=True):
        self.enabled = enabled
        self.quiet = quiet or not enabled
        self.log_json = log_json and enabled

    def bar(self, iterable, total, epoch, epochs):
        if self.quiet:
            return iterable
        from tqdm import tqdm
        return tqdm(iterable, total=total, desc=f"epoch {epoch}/{epochs}", leave=False, file=sys.stderr,
                    dynamic_ncols=True)

    def epoch_done(self, row):
        if self.log_json:
            print(json.dumps({k: _fmt(v) for k, v in row.items()}), flush=True)
        elif not self.quiet:
            text = "  ".join(f"{k} {_short(v)}" for k, v in row.items())
            print(text, file=sys.stderr, flush=True)

    def say(self, text):
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def warn(self, text):
        """Printed even with --quiet (but by rank 0 only)."""
        if self.enabled:
            print(f"warning: {text}", file=sys.stderr, flush=True)


class TensorBoard:
    """Optional event files (`--tensorboard`); needs the tensorboard package, imported only when asked."""

    def __init__(self, path, enabled):
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UserError("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
            self.writer = SummaryWriter(str(path))

    def epoch_done(self, row):
        if self.writer:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, row["epoch"])
            self.writer.flush()

    def close(self):
        if self.writer:
            self.writer.close()


def _fmt(v):
    return float(f"{v:.10g}") if isinstance(v, float) else v


def _short(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)
