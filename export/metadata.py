"""What an exported file says about where it came from (ONNX `metadata_props`, all strings).

builder.spec.reader           spec name                     builder.network   network name
builder.spec_hash      hash of the resolved spec     builder.version   builder version
builder.inputs         JSON [{name, shape, dtype, value_range}]   (symbolic dims as strings)
builder.outputs        JSON [output names]
builder.class_labels   JSON [labels], when known     builder.dynamic   JSON [symbols kept dynamic]
builder.dim_ranges     JSON {symbol: [low, high]} for a dynamic dim the network limits (a minimum size, a
                       table's length; high null: unbounded)
builder.fixed_dims     JSON {symbol: {size, why}} for each symbolic dim of the spec the file fixes
builder.vocab          JSON [characters] of a character language model (id = index)
builder.data.tokenizer      a language model's tokenizers JSON (byte-level BPE)
builder.generation.loop     JSON manifest of a `--generate` export (token input, cache tensors, context)
builder.input_preparation  what the training data pipeline did to the inputs before the network saw them
                       (standardize, normalize, resize), when anything: it is not part of the exported graph
builder.data           JSON: the training data's layout (`source`; a CSV's feature columns, kinds, category
                       vocabularies, fill values, target, class names, input groups, text columns' tokenizers;
                       an npz's array names; images' mode, resize, crop, classes; a series' window) and
                       `outputs_in_data_units`, true when the target's de-standardisation is the graph's last
                       op; `build predict`/`evaluate` read files by it (builder.data.model_files)
"""
from __future__ import annotations

import json

PREFIX = "builder."


def builder_version() -> str:
    try:
        import builder
        version = getattr(builder, "__version__", None)
        if version:
            return str(version)
    except ImportError:
        pass
    try:
        from importlib.metadata import version
        return version("builder")
    except Exception:
        return "unknown"


def spec_hash(spec) -> str:
    if spec is None:
        return ""
    if hasattr(spec, "hash"):
        return str(spec.hash())
    return ""


def class_labels(spec=None, checkpoint: dict | None = None) -> list | None:
    """Labels from the checkpoint (what the trainer saw) or else from the spec."""
    for key in ("class_labels", "labels", "classes"):
        value = (checkpoint or {}).get(key)
        if isinstance(value, (list, tuple)) and value:
            return [str(v) for v in value]
    labels = getattr(spec, "labels", None)
    return [str(v) for v in labels] if labels else None


def data_record(checkpoint: dict | None, module=None) -> dict | None:
    """builder.data's value: the checkpoint's data layout and whether the outputs are in data units."""
    layout = (checkpoint or {}).get("data_layout")
    inside = module is not None and "output_preparation" in getattr(module, "_modules", {})
    if not layout and not inside:
        return None
    return {"layout": layout or None, "outputs_in_data_units": bool(inside)}


def input_preparation(spec, inside: bool = False) -> str:
    """The train.data steps that change inputs before the network (empty when none). With `inside`, the
    trained statistics were put at the start of the exported graph (builder.data.preparation), which then
    takes raw inputs; otherwise whoever feeds the model must prepare inputs the same way."""
    data = ((getattr(spec, "train", None) or {}).get("data") or {}) if spec is not None else {}
    steps = []
    if data.get("source") == "images":
        steps.append(f"images decoded as {data.get('mode', 'RGB')}, resized to {data.get('resize')}"
                     + (f", centre-cropped to {data['crop']}" if data.get("crop") else "")
                     + ", scaled to [0, 1] (build predict does this from builder.data's layout)")
        if data.get("normalize"):
            steps.append(f"normalize {data['normalize']}")
        return ("inside the model: " if inside and data.get("normalize") else "") + "; ".join(steps)
    if data.get("standardize"):
        steps.append("standardize (mean/std of the training split)")
    transform = data.get("transform") or {}
    if transform.get("resize"):
        steps.append(f"resize to {transform['resize']}")
    if transform.get("normalize"):
        steps.append("normalize")
    if inside and steps:
        return "inside the model: " + ", ".join(steps) + "; feed raw inputs"
    return ", ".join(steps)


def vocabulary_metadata(tokenizer) -> dict[str, str]:
    """`vocab` or `tokenizer` entries (without the prefix) for a builder.data.tokenizer object, or {}."""
    if tokenizer is None:
        return {}
    state = tokenizer.state()
    return {"vocab": json.dumps(state["vocab"], ensure_ascii=False)} if "vocab" in state \
        else {"tokenizer": state["tokenizer"]}


def build_metadata(sig, *, spec=None, network: str | None = None, labels=None, dynamic=(),
                   ranges: dict | None = None, prepared_inside: bool = False,
                   fixed: dict | None = None, tokenizer=None, data: dict | None = None) -> dict[str, str]:
    meta = {
        "spec": getattr(spec, "name", "") or "",
        "network": network or "",
        "spec_hash": spec_hash(spec),
        "version": builder_version(),
        "inputs": json.dumps([{"name": i.name, "shape": list(i.shape), "dtype": i.dtype,
                               "value_range": list(i.value_range) if i.value_range else None}
                              for i in sig.inputs]),
        "outputs": json.dumps(list(sig.outputs)),
        "dynamic": json.dumps(list(dynamic)),
    }
    if labels:
        meta["class_labels"] = json.dumps(list(labels))
    meta.update(vocabulary_metadata(tokenizer))
    preparation = input_preparation(spec, prepared_inside)
    if preparation:
        meta["input_preparation"] = preparation
    if fixed:
        meta["fixed_dims"] = json.dumps({k: {"size": v, "why": why} for k, (v, why) in fixed.items()})
    if data:
        meta["data"] = json.dumps(data)
    if ranges:
        meta["dim_ranges"] = json.dumps({k: [v[0], None if v[1] == float("inf") else v[1]]
                                         for k, v in ranges.items()})
    return {PREFIX + k: v for k, v in meta.items()}


def read_metadata(props: dict) -> dict:
    """`builder.*` metadata of a loaded model, JSON values decoded."""
    out = {}
    for key, value in props.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX):]
        try:
            out[name] = json.loads(value) if name in ("inputs", "outputs", "class_labels", "dynamic",
                                                      "dim_ranges", "fixed_dims", "vocab", "generation",
                                                      "data") else value
        except json.JSONDecodeError:
            out[name] = value
    return out
