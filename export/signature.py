"""The input/output signature of a network as export sees it: names, symbolic shapes, dtypes, value ranges.

It is read from the module's `build_info` (inputs and output names: the contract of builder.build), and from the
network's graph when one is given (value ranges of token ids come from the embedding that reads them).
From it come the example inputs for torch.export, the `dynamic_shapes` argument, and the input shapes
at which an export is verified.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from builder.core.errors import UserError
from builder.core.types import build_info, record

from . import dims

BATCH_NAMES = ("B", "N", "batch")
IMAGE_NAMES = ("H", "W", "D")

TORCH_DTYPES = {
    "float32": torch.float32, "float": torch.float32, "float64": torch.float64, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "int64": torch.int64, "long": torch.int64, "int32": torch.int32,
    "int": torch.int64, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}


@dataclass(frozen=True)
class InputSig:
    name: str
    shape: tuple  # int (static) or str (symbolic)
    dtype: str = "float32"
    value_range: tuple | None = None  # [low, high) for integer inputs
    pad_value: int | None = None  # for a padding mask: the value that marks padding (1 for key_padding_mask)

    @property
    def torch_dtype(self) -> torch.dtype:
        if self.dtype not in TORCH_DTYPES:
            raise UserError(f"input '{self.name}': dtype '{self.dtype}' cannot be exported")
        return TORCH_DTYPES[self.dtype]

    @property
    def is_mask(self) -> bool:
        return self.pad_value is not None or "mask" in self.name.lower()


@dataclass
class Signature:
    inputs: list[InputSig]
    outputs: list[str]
    sizes: dict = field(default_factory=dict)  # symbol -> example size used for export
    dims: dict = field(default_factory=dict)   # symbol -> dims.DimRange (what the network allows)
    given: dict = field(default_factory=dict)  # symbol -> example size the caller chose (kept on retries)

    @property
    def symbols(self) -> list[str]:
        seen = []
        for sig in self.inputs:
            for d in sig.shape:
                if isinstance(d, str) and d not in seen:
                    seen.append(d)
        return seen

    def batch_symbol(self) -> str | None:
        """The symbol of the batch: a conventional name, else the leading dim shared by the inputs."""
        syms = self.symbols
        for name in BATCH_NAMES:
            if name in syms:
                return name
        leading = {sig.shape[0] for sig in self.inputs if sig.shape and isinstance(sig.shape[0], str)}
        return next(iter(leading)) if len(leading) == 1 else None

    def shapes(self, sizes: dict) -> dict[str, tuple[int, ...]]:
        return {sig.name: tuple(sizes[d] if isinstance(d, str) else int(d) for d in sig.shape)
                for sig in self.inputs}


def signature_of(module, graph=None, sizes: dict | None = None) -> Signature:
    """The signature of a module built by builder.build (or a hand-written one with a BuildInfo)."""
    info = build_info(module)
    if info is None or not info.inputs:
        raise UserError("the module has no build_info: build it with builder.build")
    outputs = list(info.outputs)
    inputs = []
    for ts in info.inputs:
        value_range = getattr(ts, "value_range", None) or _range_from_graph(graph, ts.name)
        inputs.append(InputSig(ts.name, tuple(ts.shape), getattr(ts, "dtype", "float32") or "float32",
                               tuple(value_range) if value_range else None, _pad_value(graph, ts.name)))
    sig = Signature(inputs, outputs)
    sig.dims = dims.ranges_of(graph, sig.symbols)
    sig.given = dict(sizes or {})
    sig.sizes = default_sizes(sig, sig.given)
    return sig


def _range_from_graph(graph, name: str):
    """[0, vocab) for an integer input read by an embedding: the smallest table among its readers."""
    if graph is None or name not in graph:
        return None
    highs = []
    for _, reader in graph.out_edges(name):
        args = record(graph, reader).args
        for key in ("num_embeddings", "vocab_size", "vocab", "num_classes"):
            if isinstance(args.get(key), int):
                highs.append(args[key])
    return (0, min(highs)) if highs else None


def _pad_value(graph, name: str) -> int | None:
    """Padding is marked 1 in a `key_padding_mask` slot (nn.MultiheadAttention), 0 in a `mask` slot."""
    if graph is None or name not in graph:
        return None
    for _, reader, data in graph.out_edges(name, data=True):
        slots = record(graph, reader).slots or []
        slot = data.get("slot")
        if isinstance(slot, int) and slot < len(slots):
            if slots[slot] == "key_padding_mask":
                return 1
            if "mask" in str(slots[slot]):
                return 0
    return None


SPREADS = (2, 3, 5)  # example size >= spread * minimum + 1: one try, then the retries of an export


def default_sizes(sig: Signature, given: dict, attempt: int = 0) -> dict:
    """Example sizes for each symbol: the given one, else the declared `example:`, else batch 2, spatial
    32, others 8, raised well above the smallest size the network takes (2 * min + 1, so that no size
    inside the network is 0 or 1 at the example, which torch.export would pin), inside the range the
    network allows; distinct values for distinct symbols and none equal to a static dim, so that
    torch.export cannot merge two dims that only happen to be equal. `attempt` 1, 2 give other sizes
    (3 * min + 1 and larger, 5 * min + 1 and larger; batch 3, 5) for an export to retry with."""
    unknown = [k for k in given if k not in sig.symbols]
    if unknown:
        raise UserError(f"size given for {', '.join(map(str, unknown))}: not a symbolic dim of the inputs "
                        f"(they have: {', '.join(sig.symbols) or 'none'})")
    sizes, used = {}, set()
    batch = sig.batch_symbol()
    spread = SPREADS[attempt]
    for sym in sig.symbols:
        r = sig.dims.get(sym) or dims.DimRange(sym)
        if sym in given:
            size = int(given[sym])
        elif r.example is not None:
            size = r.example
        else:
            if sym == batch:
                want = (2, 3, 5)[attempt]
            else:
                want = (32 if sym in IMAGE_NAMES else 8) * (1 + attempt) + attempt
                want = max(want, spread * r.low + 1) if r.low > 1 else want
            size = _free_size(r, want, used | _static_dims(sig))
        sizes[sym] = size
        used.add(size)
    return sizes


def _free_size(r, want: int, taken: set) -> int:
    """The allowed size nearest above `want` that is not taken, else the nearest below it; `r.fit(want)`
    when the range allows no other (the range wins over distinctness)."""
    first = r.fit(want)
    size = first
    while size in taken:
        up = r.fit(size + r.multiple_of)
        if up <= size:
            break
        size = up
    if size not in taken:
        return size
    size = first
    while size in taken and size - r.multiple_of >= max(r.low, 1):
        size -= r.multiple_of
    return size if size not in taken else first


def _static_dims(sig: Signature) -> set:
    return {d for s in sig.inputs for d in s.shape if isinstance(d, int)}


def example_inputs(sig: Signature, sizes: dict, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """One fresh tensor per input (never one tensor for two inputs: torch.export would merge them)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = sig.shapes(sizes)
    return tuple(_make(inp, shapes[inp.name], gen) for inp in sig.inputs)


def _make(inp: InputSig, shape, gen) -> torch.Tensor:
    dtype = inp.torch_dtype
    if inp.is_mask:
        return _padding_mask(shape, dtype, gen, inp.pad_value or 0)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    if not dtype.is_floating_point:
        low, high = inp.value_range or (0, 2)
        return torch.randint(int(low), int(high), shape, generator=gen, dtype=dtype)
    if inp.value_range:
        low, high = inp.value_range
        return (torch.rand(shape, generator=gen) * (high - low) + low).to(dtype)
    return torch.randn(shape, generator=gen).to(dtype)


def _padding_mask(shape, dtype, gen, pad_value: int = 0) -> torch.Tensor:
    """Padding at the end of each row (marked `pad_value`); the first row is unpadded, no row is all padding."""
    padded = torch.zeros(shape, dtype=torch.bool)
    if len(shape) >= 2 and shape[-1] > 1:
        for row in range(1, shape[0]):
            keep = int(torch.randint(1, shape[-1] + 1, (1,), generator=gen))
            padded[row, ..., keep:] = True
    mask = padded if pad_value else ~padded
    return mask.to(dtype)


def dynamic_shapes(sig: Signature, dynamic: list[str] | None):
    """The `dynamic_shapes` argument of torch.export: one torch.export.Dim per dynamic symbol (with the
    range the network allows; m * Dim for a multiple of m), shared by every input dim that carries it.
    Symbols not dynamic are fixed at their example size."""
    by_symbol = dims.torch_dims({s: sig.dims.get(s) or dims.DimRange(s) for s in dynamic or []}, dynamic or [])
    spec = {}
    for inp in sig.inputs:
        spec[inp.name] = {i: by_symbol[d] for i, d in enumerate(inp.shape)
                          if isinstance(d, str) and d in by_symbol} or None
    return spec


def resolve_dynamic(sig: Signature, requested: list[str] | None) -> list[str]:
    """The symbols kept dynamic: all of the spec's by default, else the requested ones (checked)."""
    if requested is None:
        return sig.symbols
    unknown = [d for d in requested if d not in sig.symbols]
    if unknown:
        have = ", ".join(sig.symbols) or "none"
        raise UserError(f"--dynamic {','.join(unknown)}: not a symbolic dim of the inputs (they have: {have})")
    return list(requested)


def verification_sizes(sig: Signature, dynamic: list[str], ranges: dict | None = None) -> list[dict]:
    """Input sizes at which ONNX and torch are compared: batch 1, an odd batch, other lengths for every
    other dynamic symbol (one step up; one step down), one symbol changed alone (a non-square image),
    and the smallest sizes the network takes; all inside the allowed ranges and multiples (and inside
    the range torch.export allowed, if it narrowed one)."""
    base = dict(sig.sizes)
    batch = sig.batch_symbol() if sig.batch_symbol() in dynamic else None
    others = [s for s in dynamic if s != batch]
    ranges = ranges or {}

    def fit(sym, value):
        r = sig.dims.get(sym) or dims.DimRange(sym)
        low, high = ranges.get(sym, (1, math.inf))
        value = int(min(max(value, low), high))
        v = r.fit(value)
        return v if low <= v <= high else value

    def step(sym):
        r = sig.dims.get(sym)
        return r.multiple_of if r is not None and r.multiple_of > 1 else 3

    cases = [dict(base)]
    if batch:
        cases.append({**base, batch: fit(batch, 1)})
        odd = 3 if base[batch] != 3 else 5
        cases.append({**base, batch: fit(batch, odd)})
    if others:
        cases.append({**base, **{s: fit(s, base[s] + step(s)) for s in others}})
        cases.append({**base, **({batch: fit(batch, 3)} if batch else {}),
                      **{s: fit(s, max(1, base[s] - step(s))) for s in others}})
        if len(others) > 1:
            cases.append({**base, others[-1]: fit(others[-1], base[others[-1]] + 2 * step(others[-1]))})
        cases.append({**base, **{s: fit(s, 1) for s in others}})
    unique = []
    for case in cases:
        if case not in unique:
            unique.append(case)
    return unique
