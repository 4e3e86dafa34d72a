"""The one way the tool reads a YAML or JSON file it did not write itself in this process (a run folder's
resolved.yaml, a weight map, vocab.json / tokenizer.json, a sweep's files, ONNX metadata values): every
such file is untrusted, so it gets the spec loader's limits.

    size     at most `max_bytes` are read (a bigger file is refused before it is decoded)
    depth    nesting deeper than MAX_DEPTH levels is refused before anything recurses over it
    aliases  a YAML document that expands past MAX_EXPANDED_NODES nodes (alias bomb) is refused unexpanded
    nodes    a JSON document of more than `max_nodes` values is refused
    time     all of the above are linear in the bytes read, so a read takes the time of a normal read

A refusal is a one-line UserError naming the file (`PATH: why`), never a traceback.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from builder.core.errors import SpecError, UserError
from builder.text.yaml_loader import MAX_DEPTH, MAX_EXPANDED_NODES, MAX_FILE_BYTES, load_yaml, to_plain

MAX_JSON_NODES = 5_000_000
MAX_TOKENIZER_BYTES = 64_000_000  # a byte-level BPE of 1,000,000 tokens (the largest vocab_size allowed)
MAX_RECORD_BYTES = 32_000_000  # a run's resolved.yaml lists every node of the network (20,000 at most)
MAX_RECORD_NODES = 2_000_000


def read_bounded(path, what: str = "", max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of `path`, reading at most `max_bytes` + 1: a bigger file is refused in bounded time."""
    path = Path(path)
    label = f"{what} {path}".strip()
    try:
        data = read_at_most(path, max_bytes)
    except OSError as e:
        raise UserError(f"{label}: cannot read it: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise UserError(f"{label}: file is larger than {_size(max_bytes)}; refusing to read it")
    return data


def read_at_most(path, max_bytes: int) -> bytes:
    """At most `max_bytes` + 1 bytes of `path`, read in chunks: memory follows the file, not the limit
    (one read of the limit would allocate it whole for a 1 KB file). OSError as raised by open/read."""
    chunks, total = [], 0
    with open(path, "rb") as f:
        while total <= max_bytes:
            chunk = f.read(min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    return b"".join(chunks)


def read_text_file(path, what: str = "", max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of `path`, bounded like read_bounded."""
    data = read_bounded(path, what, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{what} {path}: not UTF-8 text ({e.reason} at byte {e.start})".strip()) from None


def read_yaml_file(path, what: str = "", max_bytes: int = MAX_FILE_BYTES, max_nodes: int = MAX_EXPANDED_NODES):
    """A YAML file as plain data (dicts, lists, scalars) under the spec loader's limits."""
    return parse_yaml_text(read_text_file(path, what, max_bytes), f"{what} {path}".strip(), max_bytes, max_nodes)


def parse_yaml_text(text: str, name: str, max_bytes: int = MAX_FILE_BYTES, max_nodes: int = MAX_EXPANDED_NODES):
    """YAML text as plain data: size, depth and alias limits (yaml_loader.load_yaml); one-line errors."""
    if len(text) > max_bytes:
        raise UserError(f"{name}: larger than {_size(max_bytes)}; refusing to read it")
    try:
        return to_plain(load_yaml(text, name, max_bytes, max_nodes))
    except SpecError as e:
        raise UserError(str(e).splitlines()[0]) from None


def read_json_file(path, what: str = "", max_bytes: int = MAX_FILE_BYTES, max_nodes: int = MAX_JSON_NODES):
    """A JSON file as plain data under the limits (size, depth, node count)."""
    return parse_json_text(read_text_file(path, what, max_bytes), f"{what} {path}".strip(), max_bytes, max_nodes)


def parse_json_text(text, name: str, max_bytes: int = MAX_FILE_BYTES, max_nodes: int = MAX_JSON_NODES):
    """JSON text (a file's, or an ONNX metadata value) as plain data; a one-line UserError naming `name`
    for text that is too big, not JSON, nested deeper than MAX_DEPTH or holding more than `max_nodes`
    values. Depth is checked on the text before the parser recurses into it."""
    if not isinstance(text, (str, bytes)):
        raise UserError(f"{name}: expected JSON text, got {type(text).__name__}")
    if len(text) > max_bytes:
        raise UserError(f"{name}: larger than {_size(max_bytes)}; refusing to read it")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise UserError(f"{name}: JSON nested deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(text)  # NaN / Infinity as Python writes them (a test.json of a diverged run)
    except (json.JSONDecodeError, ValueError, RecursionError) as e:
        raise UserError(f"{name}: not valid JSON ({str(e).splitlines()[0][:200]})") from None
    count = _count(data, max_nodes)
    if count > max_nodes:
        raise UserError(f"{name}: more than {max_nodes} JSON values")
    return data


_NOT_BRACKETS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[^\[\]{}"]+')


def json_depth(text: str) -> int:
    """The deepest bracket nesting of JSON text, strings skipped; linear, no recursion."""
    import numpy as np

    brackets = _NOT_BRACKETS.sub("", text).encode("ascii", "replace")
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, np.where(codes == ord('"'), 0, -1))
    return int(np.cumsum(steps).max())


def _count(data, limit: int) -> int:
    count, stack = 0, [data]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _size(n: int) -> str:
    return f"{n // 1_000_000} MB" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000} kB"
