"""The Open Inference Protocol's tensors (KServe v2; Triton's HTTP API): a request's inputs to numpy arrays
and outputs back, as JSON (`data`: the values, row-major) or through the binary tensor data extension
(a JSON header of `Inference-Header-Content-Length` bytes, then each tensor's raw little-endian bytes in
order, sized by its `parameters.binary_data_size`).
"""
from __future__ import annotations

import json
import math

import numpy as np
from builder.core.errors import UserError

# v2 datatype <-> numpy dtype
DATATYPES = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
             "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16",
             "FP32": "float32", "FP64": "float64"}
NUMPY_TO_V2 = {v: k for k, v in DATATYPES.items()}
MAX_ELEMENTS = 1 << 26


class ProtocolError(UserError):
    """A request that does not follow the protocol or does not fit the model: answered with a 400."""


def v2_datatype(dtype) -> str:
    return NUMPY_TO_V2.get(np.dtype(dtype).name, "BYTES")


def split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """(the JSON header, the binary part) of a request body."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise ProtocolError(f"Inference-Header-Content-Length '{header_length[:40]}' is not a number") from None
        if not 0 < n <= len(body):
            raise ProtocolError(f"Inference-Header-Content-Length {n} does not fit a body of {len(body)} bytes")
        head, rest = body[:n], body[n:]
    else:
        head, rest = body, b""
    return load_json(head), rest


MAX_REQUEST_VALUES = 50_000_000  # JSON values in one request (its body is capped in bytes by the app)


def load_json(text: bytes) -> dict:
    """A JSON object, read like every untrusted JSON the tool reads (builder.text.readers: depth checked
    before parsing, values counted); any refusal is answered as bad JSON."""
    from builder.text.readers import parse_json_text

    try:
        value = parse_json_text(text, "the request", max(len(text), 1), MAX_REQUEST_VALUES)
    except UserError as e:
        raise ProtocolError(f"the request is not JSON we read ({str(e).splitlines()[0][:160]})") from None
    if not isinstance(value, dict):
        raise ProtocolError("the request must be a JSON object")
    return value


def parameters(entry: dict) -> dict:
    """An entry's `parameters` object; anything else there is a protocol error."""
    value = entry.get("parameters")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"'parameters' must be an object, got {type(value).__name__}")
    return value


def decode_inputs(request: dict, binary: bytes) -> dict[str, np.ndarray]:
    """{name: array} of a v2 inference request's `inputs`."""
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("the request has no 'inputs' list")
    arrays, offset = {}, 0
    for k, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise ProtocolError(f"inputs[{k}] needs a 'name'")
        name, shape, datatype = tensor["name"], tensor.get("shape"), tensor.get("datatype")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise ProtocolError(f"input '{name}': 'shape' must be a list of whole numbers >= 0, got {shape!r}"[:200])
        if datatype not in DATATYPES:
            raise ProtocolError(f"input '{name}': datatype {datatype!r} is not one of {', '.join(DATATYPES)}"[:200])
        count = math.prod(shape)
        if count > MAX_ELEMENTS:
            raise ProtocolError(f"input '{name}': {count:,} elements, more than the {MAX_ELEMENTS:,} allowed")
        dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
        size = parameters(tensor).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size != count * dtype.itemsize or offset + size > len(binary):
                raise ProtocolError(f"input '{name}': binary_data_size {size!r} does not match shape {shape} of "
                                    f"{datatype} (or the body is too short)")
            array = np.frombuffer(binary, dtype=dtype, count=count, offset=offset).reshape(shape)
            offset += size
        else:
            if "data" not in tensor:
                raise ProtocolError(f"input '{name}' has no 'data' (and no binary_data_size)")
            try:
                array = np.asarray(tensor["data"], dtype=dtype)
            except (ValueError, TypeError, OverflowError) as e:
                why = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
                raise ProtocolError(f"input '{name}': data is not {datatype} ({why})") from None
            if array.size != count:
                raise ProtocolError(f"input '{name}': {array.size} values for shape {shape} ({count} needed)")
            array = array.reshape(shape)
        if name in arrays:
            raise ProtocolError(f"input '{name}' is given twice")
        arrays[name] = array.astype(dtype.newbyteorder("="), copy=False)
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data belong to no input")
    return arrays


def requested_outputs(request: dict, names: list[str]) -> tuple[list[str], dict[str, bool]]:
    """(the output names to return, whether each goes back as binary data)."""
    every_binary = bool(parameters(request).get("binary_data_output", False))
    wanted = request.get("outputs")
    if wanted is None:
        return list(names), {n: every_binary for n in names}
    if not isinstance(wanted, list):
        raise ProtocolError("'outputs' must be a list")
    chosen, binary = [], {}
    for k, out in enumerate(wanted):
        name = out.get("name") if isinstance(out, dict) else None
        if name not in names:
            raise ProtocolError(f"outputs[{k}]: the model has no output {name!r} (it has: {', '.join(names)})")
        chosen.append(name)
        binary[name] = bool(parameters(out).get("binary_data", every_binary))
    return chosen, binary


def encode_response(model: str, request_id, arrays: dict[str, np.ndarray],
                    binary: dict[str, bool]) -> tuple[bytes, dict]:
    """(body, extra headers) of a v2 inference response."""
    outputs, blobs = [], []
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        entry = {"name": name, "datatype": v2_datatype(array.dtype), "shape": list(array.shape)}
        if binary.get(name):
            raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = array.reshape(-1).tolist()
        outputs.append(entry)
    head = {"model_name": model, "model_version": "1", "outputs": outputs}
    if request_id is not None:
        head["id"] = request_id
    text = json.dumps(head).encode()
    if not blobs:
        return text, {"Content-Type": "application/json"}
    return text + b"".join(blobs), {"Content-Type": "application/octet-stream",
                                    "Inference-Header-Content-Length": str(len(text))}


def tensor_metadata(name: str, dtype: str, shape) -> dict:
    return {"name": name, "datatype": v2_datatype(dtype), "shape": [d if isinstance(d, int) else -1 for d in shape]}
