"""Build modules on the meta device without running their initialisers.

Checking a spec builds every op's module on the meta device (no memory) to let torch validate the
arguments and to read parameter shapes. Running the initialisers there is wasted work, and on some
layers (Embedding's normal_) it imports torch._dynamo: a second of start-up for every command.
"""
from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode

_INITIALISERS = {"normal_", "uniform_", "zero_", "zeros_", "ones_", "fill_", "constant_", "trunc_normal_",
                 "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "orthogonal_",
                 "eye_", "dirac_", "sparse_"}


class _SkipInitialisers(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in _INITIALISERS:
            return args[0] if args else next(iter(kwargs.values()))
        return func(*args, **kwargs)


@contextlib.contextmanager
def meta_device():
    """`with meta_device(): module = nn.Embedding(...)`: parameters on meta, initialisers skipped."""
    with torch.device("meta"), _SkipInitialisers():
        yield
