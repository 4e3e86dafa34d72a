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
builder.input_columns  JSON {input name: [{column, kind, at, width, categories | fill}]}: where each CSV
                       column lands in a sample's feature row after one-hot (builder.data.files
                       .column_positions); a plain onnxruntime user builds the row from it
builder.output_kinds   JSON {output name: kind}: logits (softmax over the class dim gives probabilities),
                       sigmoid_logits, probabilities, log_probabilities, values (data units when
                       builder.data says outputs_in_data_units), or unknown (no train section to say)
builder.data           JSON: the training data's layout (`source`; a CSV's feature columns, kinds, category
                       vocabularies, fill values, target, class names, input groups, text columns' tokenizers;
                       an npz's array names; images' mode, resize, crop, classes; a series' window) and
                       `outputs_in_data_units`, true when the target's de-standardisation is the graph's last
                       op; `build predict`/`evaluate` read files by it (builder.data.model_files)
"""
from __future__ import annotations

import json

from builder.core.errors import UserError

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


# what an output holds, from the op that makes it, else from the loss it was trained with
_KIND_OF_OP = {"Softmax": "probabilities", "Sigmoid": "probabilities", "LogSoftmax": "log_probabilities"}
_KIND_OF_LOSS = {"cross_entropy": "logits", "token_cross_entropy": "logits", "bce_with_logits": "sigmoid_logits",
                 "nll": "log_probabilities", "bce": "probabilities", "mse": "values", "l1": "values",
                 "huber": "values"}


def _loss_name(cfg):
    return cfg.get("type") if isinstance(cfg, dict) else cfg if isinstance(cfg, str) else None


def output_kinds(spec, graph, outputs) -> dict[str, str]:
    """{output name: kind} (see builder.output_kinds above): a plain onnxruntime user must know whether to
    apply a softmax. The op that makes the output decides first; else the loss that trained it (one loss
    trains the first output; loss terms name theirs); else 'unknown'."""
    from builder.core.types import record

    training = getattr(spec, "training", None)
    by_loss = {}
    if training is not None and getattr(training, "mode", "supervised") != "gan":
        loss = training.loss
        if isinstance(loss, (list, tuple)):
            for term in loss:
                if isinstance(term, dict) and isinstance(term.get("output"), str):
                    by_loss.setdefault(term["output"], _KIND_OF_LOSS.get(_loss_name(term), "unknown"))
        elif outputs:
            by_loss[outputs[0]] = _KIND_OF_LOSS.get(_loss_name(loss), "unknown")
    made_by = {}
    if graph is not None:
        for name, node, _ in graph.graph.get("outputs") or ():
            try:
                made_by[name] = record(graph, node).op
            except (KeyError, AttributeError):
                pass
    return {name: _KIND_OF_OP.get(made_by.get(name)) or by_loss.get(name, "unknown") for name in outputs}


def input_columns(sig, data: dict | None) -> dict | None:
    """builder.input_columns: a CSV-trained model's single input, column by column (or None)."""
    from builder.data.files import column_positions

    layout = (data or {}).get("layout")
    if not layout or not layout.get("features") or len(sig.inputs) != 1:
        return None
    return {sig.inputs[0].name: column_positions(layout)}


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
                   fixed: dict | None = None, tokenizer=None, data: dict | None = None,
                   graph=None) -> dict[str, str]:
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
        "output_kinds": json.dumps(output_kinds(spec, graph, list(sig.outputs))),
    }
    columns = input_columns(sig, data)
    if columns:
        meta["input_columns"] = json.dumps(columns)
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


JSON_KEYS = ("inputs", "outputs", "class_labels", "dynamic", "dim_ranges", "fixed_dims", "vocab", "generation",
             "data", "input_columns", "output_kinds")
MAX_VALUE_BYTES = 64_000_000  # a BPE tokenizer's JSON is the largest value a model carries


def read_metadata(props: dict, source: str = "model") -> dict:
    """`builder.*` metadata of a loaded model, JSON values decoded under the limits of every file we read
    (builder.text.readers) and checked for the types the readers of each key expect: a crafted file is a
    one-line UserError naming `source` and the key, never a traceback further on."""
    from builder.text.readers import parse_json_text

    out = {}
    for key, value in props.items():
        if not isinstance(key, str) or not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX):]
        where = f"{source}: metadata {key}"
        if not isinstance(value, str) or len(value) > MAX_VALUE_BYTES:
            raise UserError(f"{where}: not a text value of at most {MAX_VALUE_BYTES // 1_000_000} MB")
        if name not in JSON_KEYS:
            out[name] = value
            continue
        data = parse_json_text(value, where, MAX_VALUE_BYTES)
        _check(name, data, where)
        out[name] = data
    return out


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(name: str, data, where: str) -> None:
    """The shape of each JSON value, as build_metadata writes it."""
    ok = True
    if name == "inputs":
        ok = isinstance(data, list) and all(
            isinstance(i, dict) and isinstance(i.get("name"), str) and isinstance(i.get("shape", []), list)
            and (i.get("value_range") is None or (isinstance(i["value_range"], list) and len(i["value_range"]) == 2
                                                  and all(_number(v) for v in i["value_range"])))
            for i in data)
    elif name in ("outputs", "class_labels", "dynamic", "vocab"):
        ok = _strings(data)
    elif name == "dim_ranges":
        ok = isinstance(data, dict) and all(isinstance(v, list) and len(v) == 2 and _number(v[0])
                                            and (v[1] is None or _number(v[1])) for v in data.values())
    elif name in ("fixed_dims", "generation"):
        ok = isinstance(data, dict)
    elif name == "output_kinds":
        ok = isinstance(data, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())
    elif name == "input_columns":
        ok = isinstance(data, dict) and all(
            isinstance(cols, list) and all(isinstance(c, dict) and isinstance(c.get("column"), str)
                                           and isinstance(c.get("at"), int) and isinstance(c.get("width"), int)
                                           for c in cols) for cols in data.values())
    elif name == "data":
        ok = isinstance(data, dict) and (data.get("layout") is None or isinstance(data["layout"], dict))
        if ok and data.get("layout") is not None:
            from builder.data.files import check_layout
            check_layout(data["layout"], where)
    if not ok:
        raise UserError(f"{where}: not the {name} record this tool writes")
