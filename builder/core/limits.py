"""Size limits of a whole model, checked before anything is allocated.

The per-node limits of shape inference (graph/infer.py) stop one absurd layer; these stop a spec of many
large layers (10^10 parameters passed `build check` and then died with an allocation traceback in
export, bench and viz). The parameter limit is overridable per command (`--max-params N`) or in Python
(`with allow_params(N): ...`); the memory check compares what building a module will allocate with the
memory the machine has available now.
"""
from __future__ import annotations

import contextlib
import contextvars

from builder.core.errors import UserError

MAX_TOTAL_PARAMS = 2_000_000_000  # 8 GB of float32 weights
_limit = contextvars.ContextVar("max_total_params", default=MAX_TOTAL_PARAMS)


def max_params() -> int:
    return _limit.get()


@contextlib.contextmanager
def allow_params(n: int | None):
    """Raise (or lower) the total parameter limit inside the block; None keeps the default."""
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"--max-params must be a positive whole number, got {n!r}")
    token = _limit.set(n)
    try:
        yield
    finally:
        _limit.reset(token)


def check_total_params(count: int, what: str) -> None:
    """A one-line refusal when `what` has more parameters than the limit."""
    if count > max_params():
        raise UserError(f"{what}: {count:,} parameters in all, over the limit of {max_params():,} "
                        f"({count * 4 / 1e9:.1f} GB of float32 weights); raise it with --max-params N if you "
                        "mean it")


def available_memory() -> int | None:
    """Bytes of memory available now (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(need: int, what: str) -> None:
    """A one-line refusal when `need` bytes are more than the machine has available now."""
    free = available_memory()
    if free is not None and need > free:
        raise UserError(f"{what} needs about {need / 1e9:.1f} GB of memory, the machine has {free / 1e9:.1f} GB "
                        "available; use a smaller model (or a machine with more memory)")
