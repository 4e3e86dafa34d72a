"""Sizes a spec may leave to the data: `${data.num_features}`, `${data.num_classes}` and `auto` input dims.

`build train` (and `builder.train` on a path) read the training split named by the spec's `train.data`
once, and load the spec with these numbers as `data.*` values; they are then part of the resolved params,
so `resolved.yaml` records them and a resumed run rebuilds the same network.
"""
from __future__ import annotations

import math
import re


from builder.core.errors import UserError

# Each scan stops at the next brace (bracket), so the search is linear even in text of 100,000 `${`.
USES_DATA = re.compile(r"\$\{[^{}]*\bdata\.(num_classes|num_features|vocab_size)\b|\[[^\[\]]*\bauto\b")


def needs_data(text: str) -> bool:
    """Whether a spec's text leaves a size to the data."""
    return bool(USES_DATA.search(text))


def data_sizes(train_data: dict) -> dict:
    """{"data.num_features": F, "data.num_classes": C} of the training split that `train_data` names:
    F = values per sample of the first input; C = the data's classes, else 1 + the largest integer target."""
    from builder.data import load_data

    data = load_data(train_data)
    first = data.train.sample(1)
    out = {"data.num_features": int(math.prod(first[0].shape[1:]))}
    classes = data.info.get("num_classes")
    if classes is None and data.train.has_target and not data.train.streamed:
        target = data.train.fields[-1]
        if not target.is_floating_point():
            classes = int(target.max()) + 1
    if classes is not None:
        out["data.num_classes"] = int(classes)
    if data.info.get("vocab_size"):
        out["data.vocab_size"] = int(data.info["vocab_size"])  # a text column's (or a language model's) tokens
    return out


def load_sized(path, overrides: dict, safe: bool = False):
    """builder.load(path), with the `data.*` sizes from the training data when the spec asks for them."""
    from pathlib import Path

    from builder.spec.reader import load
    from builder.text.readers import parse_yaml_text, read_text_file

    # bounded like every spec read: a 300 MB file is refused after reading 2 MB + 1 byte; a file that cannot
    # be read (too large, not UTF-8) is left to the spec reader, whose error names file:line as always
    try:
        text = read_text_file(path, "spec") if Path(path).is_file() else ""
    except UserError:
        return load(path, overrides=overrides, safe=safe)
    if not needs_data(text) or any(k.startswith("data.") for k in overrides):
        return load(path, overrides=overrides, safe=safe)
    doc = parse_yaml_text(text, str(path)) or {}
    section = (doc.get("train") or {}).get("data") if isinstance(doc.get("train"), dict) else None
    section = {"source": section} if isinstance(section, str) else section
    if section is None:  # no data to read: the spec's errors say which values need it
        return load(path, overrides=overrides, safe=safe)
    if not isinstance(section, dict) or "${" in repr(section):
        raise UserError(f"{path}: the spec takes sizes from the data (${{data.*}} or `auto`), so its train.data "
                        "must name the data in plain values (no ${...})")
    section = dict(section)
    for key, value in overrides.items():
        if isinstance(key, str) and key.startswith("train.data."):
            section[key.split(".", 2)[2]] = value
    return load(path, overrides={**overrides, **data_sizes(section)}, safe=safe)


__all__ = ["data_sizes", "load_sized", "needs_data"]
