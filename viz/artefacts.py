"""When a gradient picture's numbers are artefacts of how it was made, not facts about the network.

A picture that diagnoses exploding and vanishing gradients must not show them where there are none. Four
things make its numbers untrustworthy, and each is watched for while the step runs (forward hooks on the
real module, so what is reported is what happened, not what the shapes promise):
- a BatchNorm that normalises over fewer than BN_MIN_VALUES values per channel (batch x spatial size):
  over two values its output is +-1 whatever the input, and its gradient blows up;
- a k x k convolution or pooling (k > 1) whose input maps are 1 x 1: the spatial size ran out before the
  end of the network, the kernel sees padding;
- a stand-in loss (mse to a random target) where the spec has no loss for a target;
- random inputs where no training data was used.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

BN_MIN_VALUES = 32  # values per channel a BatchNorm must normalise over for its gradient to mean much
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_WINDOWED = (nn.Conv2d, nn.Conv3d, nn.MaxPool2d, nn.AvgPool2d, nn.MaxPool3d, nn.AvgPool3d, nn.ConvTranspose2d)


@dataclass
class Watch:
    """What the hooks saw during the forward passes of the step."""
    bn_values: dict = field(default_factory=dict)  # spec path -> fewest values per channel it normalised
    one_by_one: list = field(default_factory=list)  # spec paths of k x k windows that saw 1 x 1 maps

    @property
    def fewest_bn_values(self) -> int | None:
        return min(self.bn_values.values()) if self.bn_values else None


def _kernel_larger_than_one(module) -> bool:
    k = getattr(module, "kernel_size", 1)
    k = k if isinstance(k, (tuple, list)) else (k,)
    return any(int(x) > 1 for x in k)


@contextlib.contextmanager
def watch(module: nn.Module):
    """Hooks on every BatchNorm and k x k window of `module` while the block runs; yields the Watch."""
    seen = Watch()
    handles = []

    def on_batchnorm(path):
        def hook(mod, args):
            x = args[0] if args else None
            if isinstance(x, torch.Tensor) and mod.training and x.dim() >= 2 and x.shape[1] > 0:
                n = x.numel() // x.shape[1]
                seen.bn_values[path] = min(n, seen.bn_values.get(path, n))
        return hook

    def on_window(path):
        def hook(mod, args):
            x = args[0] if args else None
            if isinstance(x, torch.Tensor) and x.dim() >= 3 and all(s == 1 for s in x.shape[2:]) \
                    and path not in seen.one_by_one:
                seen.one_by_one.append(path)
        return hook

    for path, sub in module.named_modules():
        if isinstance(sub, _BATCHNORMS):
            handles.append(sub.register_forward_pre_hook(on_batchnorm(path)))
        elif isinstance(sub, _WINDOWED) and _kernel_larger_than_one(sub):
            handles.append(sub.register_forward_pre_hook(on_window(path)))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def _few(paths: list, most: int = 3) -> str:
    return ", ".join(paths[:most]) + (f" and {len(paths) - most} more" if len(paths) > most else "")


def warnings_of(seen: Watch, random_inputs: bool, stand_in_loss: bool) -> list[str]:
    """One line per artefact, most serious first; empty when the picture's numbers can be trusted."""
    out = []
    small = sorted((n, p) for p, n in seen.bn_values.items() if n < BN_MIN_VALUES)
    if small:
        out.append(f"BatchNorm over only {small[0][0]} value(s) per channel at {_few([p for _, p in small])} "
                   f"(fewer than {BN_MIN_VALUES}): its gradients are artefacts of the batch; use a larger "
                   "--batch-size or larger inputs")
    if seen.one_by_one:
        out.append(f"spatial maps reduced to 1 x 1 before the end (at {_few(seen.one_by_one)}): the inputs "
                   "are too small for this network; declare dims: {H: {example: ...}} or pass --size")
    if stand_in_loss:
        out.append("the loss is a stand-in (mse to a random target; no target for the spec's loss): gradient "
                   "sizes follow it, not training")
    if random_inputs:
        out.append("random inputs, not data: pass --inputs FILE.npz or --data SOURCE for real ones")
    return out


def batch_words(seen: Watch) -> str:
    """'every BatchNorm normalises over >= N values per channel' for the title, or '' without BatchNorm."""
    n = seen.fewest_bn_values
    return "" if n is None else f"every BatchNorm normalises over >= {n} values per channel"
