"""A Triton Inference Server model repository from a verified ONNX file, so the same model scales out:

    DIR/<name>/config.pbtxt      platform onnxruntime_onnx, inputs/outputs with dtypes and dims, batching
    DIR/<name>/1/model.onnx      the file (and its .data, when the weights are external)

When every input and output starts with a dynamic dim (the batch), the config declares
`max_batch_size` (capped by the file's own batch range, builder.dim_ranges) with the per-sample dims and
turns on dynamic batching; otherwise `max_batch_size: 0` and the full dims. Other dynamic dims are -1.
"""
from __future__ import annotations

import re
from pathlib import Path

import onnx
from builder.core.errors import UserError
from builder.core.io_utils import atomic_write_bytes, atomic_write_text

# onnx TensorProto element type -> Triton's DataType name
TRITON_TYPES = {
    onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.DOUBLE: "TYPE_FP64", onnx.TensorProto.BFLOAT16: "TYPE_BF16",
    onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.INT16: "TYPE_INT16", onnx.TensorProto.INT8: "TYPE_INT8",
    onnx.TensorProto.UINT8: "TYPE_UINT8", onnx.TensorProto.BOOL: "TYPE_BOOL",
}
QUEUE_DELAY_US = 500


def model_name(name: str) -> str:
    """A name Triton accepts as a folder and in URLs."""
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name or "model").strip(".")
    return clean or "model"


def _dims(value) -> list:
    """Each dim: an int, or None when symbolic (dim_param or unknown)."""
    shape = value.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]


def config_text(model: onnx.ModelProto, name: str, max_batch: int = 64) -> str:
    """config.pbtxt for `model` (its graph inputs and outputs) served under `name`."""
    values = list(model.graph.input) + list(model.graph.output)
    for v in values:
        if v.type.tensor_type.elem_type not in TRITON_TYPES:
            raise UserError(f"--triton: tensor '{v.name}' has ONNX type {v.type.tensor_type.elem_type}, which "
                            "Triton's onnxruntime backend does not take")
    batched = all(_dims(v) and _dims(v)[0] is None for v in values)
    if batched:
        from export.metadata import read_metadata
        meta = read_metadata({p.key: p.value for p in model.metadata_props}, "--triton")  # bounded, checked
        ranges = meta.get("dim_ranges") or {}
        spec_inputs = meta.get("inputs") or []
        batch_sym = spec_inputs[0]["shape"][0] if spec_inputs and spec_inputs[0].get("shape") else None
        high = (ranges.get(batch_sym) or [1, None])[1] if isinstance(batch_sym, str) else None
        if high is not None:
            max_batch = min(max_batch, int(high))
    lines = [f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {max_batch if batched else 0}"]
    for kind, group in (("input", model.graph.input), ("output", model.graph.output)):
        lines.append(f"{kind} [")
        entries = []
        for v in group:
            dims = _dims(v)[1:] if batched else _dims(v)
            shown = ", ".join(str(-1 if d is None else d) for d in dims) if dims else "1"
            reshape = "" if dims else " reshape: { shape: [ ] }"
            entries.append(f'  {{ name: "{v.name}" data_type: {TRITON_TYPES[v.type.tensor_type.elem_type]} '
                           f"dims: [ {shown} ]{reshape} }}")
        lines.append(",\n".join(entries))
        lines.append("]")
    if batched:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {QUEUE_DELAY_US} }}")
    return "\n".join(lines) + "\n"


def write_repository(onnx_path, folder, name: str, max_batch: int = 64) -> Path:
    """Write DIR/<name>/1/model.onnx and DIR/<name>/config.pbtxt; returns the config's path."""
    onnx_path = Path(onnx_path)
    model = onnx.load(str(onnx_path), load_external_data=False)
    name = model_name(name)
    root = Path(folder) / name
    config = config_text(model, name, max_batch)
    external = onnx_path.with_name(onnx_path.name + ".data")
    if external.exists():  # the file names its weights file: the same name beside it
        atomic_write_bytes(root / "1" / external.name, external.read_bytes())
    atomic_write_bytes(root / "1" / "model.onnx", onnx_path.read_bytes())
    atomic_write_text(root / "config.pbtxt", config)
    return root / "config.pbtxt"

