"""What is known about the symbolic dims while a network's shapes are inferred: the `dims:` declarations
(min, max, multiple_of, example) and the minimum sizes the network itself needs.

Shape rules run inside `active(env)`; builder.shapes.rules reads the active env to prove two sizes equal, to
check that every output size is at least 1 for every allowed size, and to pick example sizes. An
undeclared dim (or a declared one without `min:`) has its minimum raised to what the network needs,
with the node that needs it; a declared `min:` that is too small is an error naming dim and node.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass, field

from builder.shapes import dimexpr as X

BIG = 2**31


class DimError(ValueError):
    """A size the declarations allow breaks a node (raised as a ShapeError by builder.shapes.rules)."""


@dataclass(frozen=True)
class DimDecl:
    """One `dims:` entry; `min` None means not written (the network's own minimum then applies)."""
    name: str
    min: int | None = None
    max: int | None = None
    multiple_of: int = 1
    example: int | None = None


@dataclass
class DimEnv:
    decls: dict = field(default_factory=dict)        # name -> DimDecl
    needed: dict = field(default_factory=dict)       # name -> (minimum the network needs, node path)
    capped: dict = field(default_factory=dict)       # name -> (maximum the network takes, node path)
    node: str = ""                                   # the node whose shape rule runs now

    @property
    def multiples(self) -> tuple:
        return tuple(sorted((n, d.multiple_of) for n, d in self.decls.items() if d.multiple_of > 1))

    def decl(self, name: str) -> DimDecl:
        return self.decls.get(name) or DimDecl(name)

    def lowest(self, name: str) -> int:
        """The smallest size `name` may take: declared or needed minimum, rounded up to its multiple."""
        d = self.decl(name)
        low = max(d.min or 1, self.needed.get(name, (1, ""))[0])
        return _round_up(low, d.multiple_of)

    def highest(self, name: str) -> int | None:
        """The largest size `name` may take (None: unbounded)."""
        caps = [c for c in (self.decl(name).max, self.capped.get(name, (None,))[0]) if c is not None]
        return min(caps) if caps else None

    def example(self, name: str) -> int:
        d = self.decl(name)
        return d.example if d.example is not None else self.lowest(name)

    def example_sizes(self, names) -> dict:
        return {n: self.example(n) for n in names}

    def with_multiple(self, name: str, m: int) -> "DimEnv":
        d = self.decl(name)
        decls = dict(self.decls)
        decls[name] = DimDecl(name, d.min, d.max, math.lcm(d.multiple_of, m), d.example)
        return DimEnv(decls, dict(self.needed), dict(self.capped), self.node)

    def require(self, text: str, least: int, what: str) -> None:
        """`text` >= `least` for every allowed size, raising the minimum of an undeclared dim if needed."""
        names = sorted(X.names(text))
        at = {n: self.lowest(n) for n in names}
        value = X.evaluate(text, at)
        if value >= least:
            return
        if len(names) != 1:
            raise DimError(f"{what} is {value} at the smallest sizes ({_sizes(at)}), needs >= {least}: "
                           f"declare larger minimums under `dims:`")
        name = names[0]
        d = self.decl(name)
        need = self._smallest(text, name, least)
        top = self.highest(name)
        if need is None or (top is not None and need > top):
            cap = f" (its max is {top})" if top is not None and need is not None else ""
            raise DimError(f"{what} is {value} at {name}={at[name]} and stays below {least} for every allowed "
                           f"{name}{cap}")
        if d.min is not None:
            raise DimError(f"{what} is {value} at {name}={at[name]} (its declared min), needs {name} >= {need}: "
                           f"declare `{name}: {{min: {need}}}` under `dims:`")
        self.needed[name] = (need, self.node)

    def require_at_most(self, name: str, most: int, what: str) -> None:
        """The dim `name` itself must stay <= most (a table of max_len rows): cap it, or check its max."""
        low, d = self.lowest(name), self.decl(name)
        if low > most:
            raise DimError(f"{what}: {name} must be <= {most} but is at least {low}")
        if d.max is not None and d.max > most:
            raise DimError(f"{what}: {name} must be <= {most}, dims: declares max: {d.max}; "
                           f"declare `{name}: {{max: {most}}}` under `dims:`")
        if self.highest(name) is None or self.highest(name) > most:
            self.capped[name] = (most, self.node)

    def _smallest(self, text, name, least) -> int | None:
        """The smallest allowed size of `name` that makes `text` >= least (sizes grow monotonically)."""
        m = self.decl(name).multiple_of
        lo = self.lowest(name)
        hi = lo
        while X.evaluate(text, {name: hi}) < least:
            if hi >= BIG:
                return None
            hi = min(BIG, _round_up(hi * 2, m))
        while hi - lo > m:
            mid = _round_up((lo + hi) // 2, m)
            if mid >= hi:
                break
            if X.evaluate(text, {name: mid}) >= least:
                hi = mid
            else:
                lo = mid
        return lo if X.evaluate(text, {name: lo}) >= least else hi

    def summary(self) -> dict:
        """Per dim: what the graph records (declared values, the effective minimum and which node needs it)."""
        out = {}
        for name in sorted(set(self.decls) | set(self.needed) | set(self.capped)):
            d = self.decl(name)
            need, node = self.needed.get(name, (None, None))
            out[name] = {"min": self.lowest(name), "max": self.highest(name), "multiple_of": d.multiple_of,
                         "example": d.example, "declared": name in self.decls,
                         "min_needed_by": node if need is not None and need > (d.min or 1) else None,
                         "max_needed_by": self.capped.get(name, (None, None))[1]}
        return out


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


def nearest_allowed(value: int, low: int, high: int | None, multiple_of: int) -> int:
    """The allowed size nearest above `value` in [low, high] that is a multiple of `multiple_of` (below it
    when `value` passes the maximum)."""
    v = _round_up(max(low, _round_up(int(value), multiple_of)), multiple_of)
    if high is not None and v > high:
        v = high // multiple_of * multiple_of
    return v


def _sizes(at: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in at.items())


_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("dim_env", default=None)


def current() -> DimEnv:
    env = _ACTIVE.get()
    return env if env is not None else DimEnv()


@contextlib.contextmanager
def active(env: DimEnv):
    token = _ACTIVE.set(env)
    try:
        yield env
    finally:
        _ACTIVE.reset(token)
