"""`window: {lookback: 24, horizon: 1, stride: 1}` on a CSV or NPY source: a time series as samples.

Rows are time steps. The series is split by time first (train the earliest `split[0]` of the rows, then
val, then test, contiguous), then each split is cut into windows, so no window crosses a split and no val
or test target is ever an input of a training window. A sample's input is `lookback` rows of the input
columns (with the target columns too, their past being known, unless `target_as_input: false`), its
target the next `horizon` rows of the target columns (the whole series when the source has no target).
Targets stay in data units (with `standardize_target`, the exported model undoes the scaling itself).
"""
from __future__ import annotations

import numpy as np

from builder.core.errors import UserError

KEYS = ("lookback", "horizon", "stride", "target_as_input")


def check(window) -> dict:
    """`window:`, with defaults, or a one-line error naming the key."""
    if not isinstance(window, dict):
        raise UserError(f"train.data.window: {{lookback: N, horizon: 1, stride: 1}}, got {window!r}")
    unknown = sorted(set(window) - set(KEYS))
    if unknown:
        raise UserError(f"train.data.window: unknown key(s) {unknown}; known: {', '.join(KEYS)}")
    out = {"lookback": window.get("lookback"), "horizon": window.get("horizon", 1), "stride": window.get("stride", 1),
           "target_as_input": window.get("target_as_input", True)}
    for key in ("lookback", "horizon", "stride"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserError(f"train.data.window.{key}: a whole number of time steps >= 1, got {v!r}")
    if not isinstance(out["target_as_input"], bool):
        raise UserError(f"train.data.window.target_as_input: true or false, got {out['target_as_input']!r}")
    return out


def series(fields, n_inputs, window) -> tuple[np.ndarray, np.ndarray]:
    """(inputs [T, F], targets [T, K]) of a source's rows: the input columns (and the target's past), and the
    target columns (or the whole series when there is no target)."""
    cols = [np.asarray(f, dtype=np.float32).reshape(len(f), -1) for f in fields[:n_inputs]]
    if len(fields) > n_inputs:
        target = np.asarray(fields[n_inputs], dtype=np.float32).reshape(len(fields[n_inputs]), -1)
        if window["target_as_input"]:
            cols.append(target)
    else:
        target = np.concatenate(cols, axis=1)
    return np.concatenate(cols, axis=1), target


def cut(x, y, window, where="train.data.window", every=None):
    """Windows of one contiguous stretch: inputs [N, lookback, F], targets [N, horizon] (one target column)
    or [N, horizon, K]."""
    lookback, horizon = window["lookback"], window["horizon"]
    stride = every or window["stride"]
    ends = np.arange(lookback, len(x) - horizon + 1, stride)
    if len(ends) == 0:
        raise UserError(f"{where}: {len(x)} time steps are too few for one window (lookback {lookback} + horizon {horizon})")
    xs = x[ends[:, None] + np.arange(-lookback, 0)]
    ys = y[ends[:, None] + np.arange(horizon)]
    return xs, (ys[..., 0] if ys.shape[-1] == 1 else ys)


def split(fields, n_inputs, window, fractions):
    """Raw splits ((fields, n_inputs, None) or None, train first) of a series split by time, then windowed."""
    x, y = series(fields, n_inputs, window)
    fractions = [float(f) for f in fractions]
    if not 1 <= len(fractions) <= 3 or any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-6:
        raise UserError(f"train.data.split: 1 to 3 non-negative fractions summing to at most 1, got {fractions}")
    bounds = np.cumsum([0] + [int(round(f * len(x))) for f in fractions])
    bounds[-1] = min(bounds[-1], len(x))
    raws = []
    for k, name in enumerate(("train", "val", "test")[:len(fractions)]):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        if k and hi - lo == 0:
            raws.append(None)
            continue
        xs, ys = cut(x[lo:hi], y[lo:hi], window, f"train.data.window ({name} split, rows {lo}..{hi - 1})")
        raws.append(([xs, ys], 1, None))
    return raws + [None] * (3 - len(raws))


def for_model(fields, n_inputs, window, had_target: bool):
    """(windows, targets or None) of a whole file, for predict and evaluate: one window per time step from
    `lookback` on, the last one forecasting past the file's end (its targets NaN: not scored)."""
    if had_target and len(fields) == n_inputs and window["target_as_input"]:
        raise UserError("the model forecasts from the target's past values: give the series with its target column(s)")
    x, y = series(fields, n_inputs, window)
    lookback, horizon = window["lookback"], window["horizon"]
    if len(x) < lookback:
        raise UserError(f"the series has {len(x)} time steps, fewer than the model's lookback {lookback}")
    ends = np.arange(lookback, len(x) + 1)
    xs = x[ends[:, None] + np.arange(-lookback, 0)]
    if had_target and len(fields) == n_inputs:
        return xs, None
    padded = np.concatenate([y, np.full((horizon, y.shape[1]), np.nan, np.float32)])
    ys = padded[ends[:, None] + np.arange(horizon)]
    return xs, (ys[..., 0] if ys.shape[-1] == 1 else ys)
