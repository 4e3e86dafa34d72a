"""The top-level `dims:` section: what the user declares about each symbolic dim.

    dims:
      H: {min: 32, max: 4096, multiple_of: 16, example: 224}
      W: {min: 32, multiple_of: 16, example: 224}

Read once in the spec stage into `DimDecl`s (builder.shapes.dimenv), with one error per bad entry at its
position; shape inference proves sizes equal under them, export turns them into torch.export Dims.
"""
from __future__ import annotations

from builder.shapes.dimenv import BIG, DimDecl
from builder.core.errors import did_you_mean
from builder.text.expr import ExprError

DIM_KEYS = ("min", "max", "multiple_of", "example")


def read_dims(reader, doc, params, evaluate) -> dict[str, DimDecl]:
    """name -> DimDecl from the document's `dims:` (errors through reader.err, at their positions);
    evaluate(value, params) resolves `${...}`."""
    raw = doc.get("dims")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        reader.err("dims must be a mapping of dim name: {min, max, multiple_of, example}", doc.loc_of("dims"))
        return {}
    out = {}
    for name, entry in raw.items():
        loc = raw.loc_of(name)
        if not isinstance(name, str) or not name.isidentifier():
            reader.err(f"dims: '{name}' must be an identifier (the name used in input shapes)", loc)
            continue
        if not isinstance(entry, dict):
            reader.err(f"must be a mapping like {{min: 32, multiple_of: 16, example: 224}}", loc,
                       node=f"dims.{name}")
            continue
        decl = _read_entry(reader, name, entry, params, evaluate)
        if decl is not None:
            out[name] = decl
    return out


def _read_entry(reader, name, entry, params, evaluate) -> DimDecl | None:
    values, ok = {}, True
    for key, value in entry.items():
        kloc = entry.loc_of(key)
        if key not in DIM_KEYS:
            reader.err(f"unknown key '{key}'", kloc, node=f"dims.{name}",
                       hint=did_you_mean(key, DIM_KEYS) or f"keys are: {', '.join(DIM_KEYS)}")
            ok = False
            continue
        try:
            value = evaluate(value, params)
        except ExprError as e:
            reader.err(str(e), kloc, node=f"dims.{name}")
            ok = False
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= BIG:
            reader.err(f"{key} must be a positive whole number (<= 2**31), got {value!r}", kloc,
                       node=f"dims.{name}")
            ok = False
            continue
        values[key] = value
    if not ok:
        return None
    decl = DimDecl(name, values.get("min"), values.get("max"), values.get("multiple_of", 1), values.get("example"))
    problem = check(decl)
    if problem:
        key = next((k for k in ("example", "max", "multiple_of", "min") if k in values), None)
        reader.err(problem, entry.loc_of(key) if key else entry.loc, node=f"dims.{name}")
        return None
    return decl


def check(d: DimDecl) -> str:
    """What is inconsistent in one declaration ('' when nothing)."""
    low = d.min or 1
    if d.max is not None and d.max < low:
        return f"max {d.max} is below min {low}"
    first = -(-low // d.multiple_of) * d.multiple_of
    if d.max is not None and first > d.max:
        return f"no multiple of {d.multiple_of} lies in [{low}, {d.max}]"
    if d.example is not None:
        if d.example < low or (d.max is not None and d.example > d.max):
            return f"example {d.example} is outside [{low}, {d.max if d.max is not None else 'inf'}]"
        if d.example % d.multiple_of:
            return f"example {d.example} is not a multiple of {d.multiple_of}"
    return ""


def check_used(reader, doc, decls: dict, input_dims: set) -> None:
    """A declared dim that no input uses is a typo (H vs h): say so, with the closest name."""
    raw = doc.get("dims")
    for name in decls:
        if name not in input_dims:
            reader.err(f"'{name}' is not a dim of any input", raw.loc_of(name), node=f"dims.{name}",
                       hint=did_you_mean(name, sorted(input_dims)) or
                       f"input dims are: {', '.join(sorted(input_dims)) or 'none'}")
