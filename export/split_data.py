"""The spec's own data as the deployed model takes it: a calibration sample of the training split and the
test split with its labels, for `build export --quantize` (calibration, and the metric before/after).

The splits come from builder.data.load_data, viewed in the network's shapes like the trainer does
(builder.training.setup.adapt_inputs). A deployed model that standardises inside its graph (the
checkpoint's `input_preparation`) takes raw inputs, so those inputs are turned back into raw values
(builder.data.preparation.raw_from_prepared); a target trained standardised is brought back to data
units when the model answers in them (`output_preparation`). Nothing here re-implements a preparation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from builder.core.errors import UserError
from builder.core.types import spec_inputs

MAX_TEST_ROWS = 10_000


@dataclass
class SplitSample:
    calibration: dict[str, np.ndarray]  # input name -> rows of the training split
    test: dict[str, np.ndarray] | None  # input name -> rows of the test split (else validation)
    truth: np.ndarray | None
    test_split: str  # "test", "val" or "" when the data has neither
    capped: bool = False


def spec_data(spec) -> dict | None:
    train = getattr(spec, "train", None) or {}
    return train.get("data") if isinstance(train, dict) else None


def require_data(spec) -> dict:
    cfg = spec_data(spec)
    if not cfg:
        raise UserError(f"spec {getattr(spec, 'name', '')!r} has no train.data: nothing to calibrate on or "
                        "measure with (use --quantize dynamic or fp16, which need no data, or add train.data)")
    return cfg


def load_sample(spec, module, checkpoint: dict | None, calibration_rows: int = 128, seed: int = 0) -> SplitSample:
    """A seeded random sample of `calibration_rows` training rows and the whole test split (at most
    MAX_TEST_ROWS rows), as numpy arrays named like the model's inputs."""
    from builder.data import load_data
    from builder.training.setup import adapt_inputs

    data = load_data(require_data(spec))
    adapt_inputs(module, data)
    names = [t.name for t in spec_inputs(module) or []]
    if len(names) < data.train.n_inputs:
        raise UserError(f"the data gives {data.train.n_inputs} inputs, the network takes {len(names)}")
    checkpoint = checkpoint or {}
    prep = checkpoint.get("input_preparation") or {}
    target_stats = data.info.get("target_statistics") if checkpoint.get("output_preparation") else None

    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))[:calibration_rows]
    calibration = _inputs(data.train._gather(torch.sort(order).values), names, prep, data.train.n_inputs)
    split, name = (data.test, "test") if data.test is not None else (data.val, "val")
    if split is None:
        return SplitSample(calibration, None, None, "")
    rows = min(len(split), MAX_TEST_ROWS)
    fields = split._gather(torch.arange(rows))
    truth = None
    if split.has_target:
        truth = fields[split.n_inputs]
        if target_stats is not None:
            truth = truth.float() * target_stats[1] + target_stats[0]
        truth = truth.cpu().numpy()
    return SplitSample(calibration, _inputs(fields, names, prep, split.n_inputs), truth, name, rows < len(split))


def _inputs(fields, names, prep, n_inputs) -> dict[str, np.ndarray]:
    from builder.data.preparation import raw_from_prepared

    out = {}
    for name, t in zip(names[:n_inputs], fields[:n_inputs]):
        if name in prep:
            t = raw_from_prepared(t, {k: torch.as_tensor(v) for k, v in prep[name].items()})
        out[name] = t.cpu().numpy()
    return out


def metric(outputs: np.ndarray, truth: np.ndarray) -> tuple[str, float]:
    """(name, value in points) of a model's first output against the labels: accuracy in percent for
    class scores (also per position, for a language model's (N, T, V) logits against (N, T) tokens),
    else R2 x 100 (the points --max-drop speaks of)."""
    truth = np.asarray(truth)
    if truth.ndim > 1 and truth.shape[-1] == 1 and outputs.ndim == truth.ndim:
        truth = truth[..., 0]  # class ids stored as a column
    if outputs.dtype.kind == "f" and truth.dtype.kind in "iu" and outputs.ndim == truth.ndim + 1:
        return "accuracy", float((outputs.argmax(axis=-1) == truth).mean() * 100)
    pred = outputs.reshape(len(outputs), -1).astype(np.float64)
    true = truth.reshape(len(truth), -1).astype(np.float64)
    total = ((true - true.mean(axis=0)) ** 2).sum()
    r2 = 1 - ((pred - true) ** 2).sum() / total if total > 0 else float("nan")
    return "r2x100", float(r2 * 100)
