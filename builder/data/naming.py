"""One rule for which data feeds which network input, and in what shape, for `build train`, `predict` and
`evaluate` alike.

Names first: a source that names its inputs (npz arrays, CSV column groups `inputs: {x: [...], adj: [...]}`,
text columns, images) feeds each spec input the field of the same name. A network with one input takes a
source's only input whatever its name (an npz array `x` feeds an input `tokens`), or a text column's ids
without their mask. A field holding
as many values per sample as the input declares is viewed in the input's shape (24 lag columns as [24, 1]).
"""
from __future__ import annotations

import math

from builder.core.errors import UserError

LABEL_ARRAYS = ("y", "classes")  # npz arrays that are never inputs (labels, class names)


def match_inputs(data_names, spec_names, where="data") -> list[int]:
    """The data field (index) that feeds each spec input, in the spec's order.

    `data_names` are the source's input names (None entries: unnamed, matched by position)."""
    data_names, spec_names = list(data_names), list(spec_names)
    index = {n: i for i, n in enumerate(data_names) if n is not None}
    if spec_names and all(n in index for n in spec_names):
        return [index[n] for n in spec_names]
    first = data_names[0] if data_names else None
    if len(spec_names) == 1 and data_names and all(n == f"{first}_mask" for n in data_names[1:]):
        return [0]  # one input: the source's first field (a text column's ids), whatever its name
    if len(spec_names) == len(data_names) and not index:
        return list(range(len(spec_names)))  # unnamed fields, by position
    missing = [n for n in spec_names if n not in index]
    given = ", ".join(str(n) for n in data_names if n is not None) or f"{len(data_names)} unnamed"
    raise UserError(f"{where}: the network takes inputs {', '.join(spec_names)}, the data gives {given}; "
                    f"nothing is named {', '.join(missing)} (name npz arrays or CSV `inputs:` groups like the inputs)")


def sample_view(have, want, name: str):
    """The per-sample shape to view data of sample shape `have` in, for an input declaring `want` (batch dim
    dropped): None when nothing changes; a one-line error when the element counts differ."""
    have, want = tuple(have), tuple(want)
    if have == want:
        return None
    if not all(isinstance(d, int) for d in want):  # symbolic sizes: rank and static sizes must agree
        if len(want) != len(have) or any(isinstance(w, int) and w != h for w, h in zip(want, have)):
            raise UserError(f"data gives input {name} samples of shape {list(have)}, the network wants {list(want)}")
        return None
    if math.prod(want) == math.prod(have):
        return want
    raise UserError(f"data gives input {name} samples of shape {list(have)}, the network wants {list(want)}")


def npz_names(files, input_names=None, x="x", y="y", where="npz data") -> list[str]:
    """The arrays of an .npz archive (names `files`) that are the inputs, in order: arrays named like the
    network's inputs, else the array `x` (training's default), else the one array that is not a label."""
    files = list(files)
    input_names = [n for n in (input_names or []) if n]
    if input_names and all(n in files for n in input_names):
        return input_names
    if len(input_names) > 1:
        missing = [n for n in input_names if n not in files]
        raise UserError(f"{where}: no array for input(s) {', '.join(missing)} (the file has: {', '.join(files) or 'nothing'})")
    if x in files:
        return [x]
    others = [f for f in files if f not in LABEL_ARRAYS and f != y]
    if len(others) == 1:
        return others
    wanted = input_names[0] if input_names else x
    raise UserError(f"{where}: no array for input(s) {wanted} (the file has: {', '.join(files) or 'nothing'})")
