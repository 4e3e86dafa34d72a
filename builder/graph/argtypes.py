"""Argument typing: does a value written in a spec fit the torch class's own annotation?

The op registry checks argument names against torch's signatures; this module checks their kinds
(`kernel_size: [3, 3]` for `int | tuple[int, int]`) and converts the YAML spelling to what the
constructor wants (a list for a tuple, an int for a float).
"""
from __future__ import annotations

import functools
import types
import typing

import torch


@functools.lru_cache(maxsize=None)
def arg_hints(cls) -> dict:
    """Constructor annotations of a torch class, by argument name."""
    try:
        return {k: v for k, v in typing.get_type_hints(cls.__init__).items() if k != "return"}
    except Exception:  # unresolvable annotations: torch's own checks still run when the module is built
        return {}


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def conform(value, hint):
    """Does `value` (plain YAML data) fit the annotation `hint`? Returns (ok, value to use).

    Accepted: lists stand for tuples, an int for a float, and a string that YAML 1.1 left
    unparsed ("1e-5") for a float. Annotations this checker does not understand accept anything.
    """
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return True, value
    if hint is type(None):
        return value is None, value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            ok, v = conform(value, option)
            if ok:
                return True, v
        return False, value
    if origin is typing.Literal:
        return value in typing.get_args(hint), value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return is_int(value), value
    if hint is float:
        if is_int(value) or isinstance(value, float):
            return True, float(value) if is_int(value) else value
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return False, value
    if hint is str:
        return isinstance(value, str), value
    if origin in (tuple, list) or hint is torch.Size:
        if not isinstance(value, (list, tuple)):
            return False, value
        items = typing.get_args(hint) if origin is not None else (int, ...)
        if origin is list:
            items = (items[0] if items else typing.Any, ...)
        if len(items) == 2 and items[1] is Ellipsis:
            kinds = [items[0]] * len(value)
        elif items:
            if len(value) != len(items):
                return False, value
            kinds = list(items)
        else:
            kinds = [typing.Any] * len(value)
        out = []
        for v, k in zip(value, kinds):
            ok, v = conform(v, k)
            if not ok:
                return False, value
            out.append(v)
        return True, out
    if hint is torch.Tensor or (isinstance(hint, type) and issubclass(hint, torch.nn.Module)):
        return False, value  # cannot be written in a spec
    return True, value


def describe_hint(hint) -> str:
    origin = typing.get_origin(hint)
    if hint is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_hint(h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (tuple, list) or hint is torch.Size:
        items = typing.get_args(hint)
        if origin is list or not items:
            return f"a list of {describe_hint(items[0]) if items else 'int'}s"
        if len(items) == 2 and items[1] is Ellipsis:
            return f"a list of {describe_hint(items[0])}s"
        return "[" + ", ".join(describe_hint(h) for h in items) + "]"
    if hint is torch.Tensor:
        return "a tensor (which a spec cannot hold)"
    return getattr(hint, "__name__", str(hint))


def first_line(e: Exception) -> str:
    """The first line of an exception's message (torch's argument errors run over several lines)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
