"""Short text for picture labels: shapes, counts, key constructor arguments."""

from __future__ import annotations

import inspect
from functools import lru_cache

# Arguments never worth a label line (structural or inferred plumbing).
_HIDDEN_ARGS = {"device", "dtype", "batch_first", "bias", "inplace", "_weight", "_freeze", "slots"}
# Short names for common constructor arguments.
_ABBREV = {
    "kernel_size": "k", "stride": "s", "padding": "p", "dilation": "d", "groups": "g",
    "num_heads": "heads", "embed_dim": "d", "num_embeddings": "vocab", "embedding_dim": "dim",
    "hidden_size": "hidden", "num_layers": "layers", "negative_slope": "slope",
    "output_size": "out", "normalized_shape": "shape", "num_features": "features",
    "start_dim": "start", "end_dim": "end", "dropout": "drop",
}
# (input size, output size) argument pairs drawn as "in -> out".
_IN_OUT = [("in_channels", "out_channels"), ("in_features", "out_features"),
           ("in1_features", "out_features"), ("input_size", "hidden_size"),
           ("num_embeddings", "embedding_dim")]


def format_shape(shape) -> str:
    """(B, 16, 32, 32) -> 'B x 16 x 32 x 32'; a scalar shape () -> 'scalar'."""
    if shape is None:
        return "?"
    shape = tuple(shape)
    return " x ".join(str(d) for d in shape) if shape else "scalar"


def format_count(n: int) -> str:
    """Exact count with thousands separators below a million, else 3 significant digits with M/B."""
    n = int(n)
    if n < 1_000_000:
        return f"{n:,}"
    if n < 1_000_000_000:
        return f"{n / 1e6:.3g}M"
    return f"{n / 1e9:.3g}B"


def format_value(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (tuple, list)):
        if v and all(x == v[0] for x in v) and not isinstance(v[0], (tuple, list)):
            return format_value(v[0])
        return "x".join(format_value(x) for x in v)
    return str(v)


@lru_cache(maxsize=None)
def _torch_defaults(op: str) -> dict:
    """Constructor defaults of torch.nn.<op>, {} when op is not a torch.nn class. A class whose own
    __init__ only forwards *args (LSTM, GRU: to RNNBase) gets the defaults of the one it forwards to."""
    try:
        import torch.nn as nn
        cls = getattr(nn, op, None)
        if not isinstance(cls, type):
            return {}
        defaults: dict = {}
        for klass in cls.__mro__:
            if klass is nn.Module or "__init__" not in vars(klass):
                continue
            sig = inspect.signature(klass.__init__)
            for k, p in sig.parameters.items():
                if p.default is not inspect.Parameter.empty:
                    defaults.setdefault(k, p.default)
            if not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in sig.parameters.values()):
                break
    except (ValueError, TypeError, ImportError):
        return {}
    return defaults


def key_args(op: str, args: dict | None, limit: int = 5) -> list[str]:
    """The few constructor arguments that say what this node is, as 'k=3' strings."""
    args = dict(args or {})
    out = []
    for a, b in _IN_OUT:
        if a in args and b in args:
            out.append(f"{format_value(args.pop(a))} -> {format_value(args.pop(b))}")
            break
    defaults = _torch_defaults(op)
    for name in sorted(args):
        value = args[name]
        if name in _HIDDEN_ARGS or name.startswith("_"):
            continue
        if name in defaults and _same(defaults[name], value):
            continue
        if not isinstance(value, (int, float, str, bool, tuple, list)) or value is None:
            continue
        if isinstance(value, (tuple, list)) and len(value) > 4:
            continue
        out.append(f"{_ABBREV.get(name, name)}={format_value(value)}")
    return out[:limit]


def _same(default, value) -> bool:
    if default == value:
        return True
    if isinstance(value, (tuple, list)) and not isinstance(default, (tuple, list)):
        return all(v == default for v in value)
    return False


def wrap_items(items: list[str], width: int = 32) -> list[str]:
    """Join items with ', ' into lines of about `width` characters."""
    lines, cur = [], ""
    for item in items:
        if cur and len(cur) + 2 + len(item) > width:
            lines.append(cur)
            cur = item
        else:
            cur = f"{cur}, {item}" if cur else item
    if cur:
        lines.append(cur)
    return lines
