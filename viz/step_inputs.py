"""Inputs for the backward and grads views from a .npz file (`--inputs FILE.npz`), so a network whose
training data does not fit can still be drawn on real inputs.

The file holds one array per network input, named like the spec's inputs (or arr_0, arr_1, ... in the
spec's order, as numpy.savez writes unnamed arrays), and optionally `target`: with a target the step
uses the spec's loss, without one the stand-in (viz.step.STAND_IN).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch


def _fail(path, message: str):
    from builder.core.errors import UserError

    raise UserError(f"{path}: {message}")


def npz_batch(path: str, tensor_specs, count: int = 1) -> tuple[list, str]:
    """([(inputs, target or None)] * count, note) from the arrays of `path`, checked against the spec's
    input shapes (static dims must match, symbolic dims take any size) and dtypes."""
    if not Path(path).is_file():
        _fail(path, "no such file (--inputs wants a .npz of the network's inputs)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        _fail(path, f"not a readable .npz file ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    inputs = []
    for i, t in enumerate(tensor_specs):
        key = t.name if t.name in arrays else f"arr_{i}"
        if key not in arrays:
            _fail(path, f"no array for input {t.name!r} (arrays: {', '.join(sorted(arrays)) or 'none'})")
        a = arrays[key]
        want = tuple(t.shape)
        if a.ndim != len(want) or any(isinstance(w, int) and w != h for w, h in zip(want, a.shape)):
            _fail(path, f"input {t.name!r} has shape {list(a.shape)}, the network wants "
                        f"[{', '.join(str(d) for d in want)}]")
        dtype = getattr(torch, t.dtype)
        if not dtype.is_floating_point and not np.issubdtype(a.dtype, np.integer) and a.dtype != np.bool_:
            _fail(path, f"input {t.name!r} must hold integers ({t.dtype}), got {a.dtype}")
        inputs.append(torch.from_numpy(np.ascontiguousarray(a)).to(dtype))
    target = torch.from_numpy(np.ascontiguousarray(arrays["target"])) if "target" in arrays else None
    if target is not None and target.is_floating_point():
        target = target.float()
    note = f"inputs from {path} (batch {len(inputs[0]) if inputs and inputs[0].dim() else 1}" + \
           (", with target)" if target is not None else ", no target: stand-in loss)")
    return [(inputs, target)] * count, note
