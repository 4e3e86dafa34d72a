"""Where and how the loops run: the device, mixed precision (autocast, GradScaler), DDP and torch.compile
wrapping, and fitting the data's inputs to the shapes the network declares."""
from __future__ import annotations

import contextlib

import torch

from builder.training.distributed import all_sum
from builder.core.errors import UserError
from builder.core.types import spec_inputs
from builder.data.naming import match_inputs, sample_view


def pick_device(device):
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    return torch.device(device)


def mixed_precision(precision, device, console):
    """An autocast context and a GradScaler (active for fp16 only); plain fp32 off CUDA."""
    if precision == "fp32":
        return contextlib.nullcontext(), torch.amp.GradScaler("cpu", enabled=False)
    if device.type != "cuda":
        console.warn(f"precision {precision} is for CUDA; training in fp32 on {device.type}")
        return contextlib.nullcontext(), torch.amp.GradScaler("cpu", enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype), torch.amp.GradScaler("cuda", enabled=precision == "fp16")


def wrap(model, device, world, compile_model):
    """The callable used in the training step: DDP across processes, torch.compile when asked."""
    net = model
    if world.active:
        from torch.nn.parallel import DistributedDataParallel as DDP
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile_model:
        net = torch.compile(net)
    return net


def first_output(out):
    """A network with several outputs returns a tuple; the loss reads the first (e.g. the head)."""
    return out[0] if isinstance(out, (tuple, list)) else out


def static_shape(model, i):
    """Per-sample shape of input i from the compiled spec (`build_info.inputs`), batch dim dropped."""
    specs = spec_inputs(model)
    if not specs:
        raise UserError("a GAN generator must declare its latent input shape (spec inputs)")
    shape = tuple(specs[i].shape[1:])
    if not all(isinstance(d, int) for d in shape):
        raise UserError(f"generator input {specs[i].name} needs a static shape, got {specs[i].shape}")
    return shape


def adapt_inputs(model, data):
    """Feed each spec input its field of the data (by name: builder.data.naming) and view it in the shape the
    network declares when only the layout differs (digits' 1x8x8 pixels for an MLP taking 64 features, a
    window of tau values as tau x 1 for an RNN)."""
    specs = spec_inputs(model)
    if not specs:
        return
    names = data.info.get("inputs") or [None] * data.train.n_inputs
    if len(specs) > 1 or len(names) > 1:
        pick = match_inputs(names, [s.name for s in specs], "train.data")
        if pick != list(range(data.train.n_inputs)):
            stats = data.info.get("input_statistics") or {}
            data.info["input_statistics"] = {new: stats[old] for new, old in enumerate(pick) if old in stats}
            data.info["inputs"] = [names[i] for i in pick]
            for ds in (data.train, data.val, data.test):
                if ds is not None:
                    ds.select_inputs(pick)
    sample = data.train.sample(1)
    shapes = [sample_view(sample[i].shape[1:], specs[i].shape[1:], specs[i].name) if i < len(specs) else None
              for i in range(data.train.n_inputs)]
    for ds in (data.train, data.val, data.test):
        if ds is not None:
            ds.reshape_inputs(shapes)


def to_device(data, device):
    for ds in (data.train, data.val, data.test):
        if ds is not None:
            ds.to(device)


def mean_over_ranks(total, count, world):
    if not world.active:
        return total / count if count else float("nan")
    t = all_sum(torch.tensor([total, float(count)], dtype=torch.float64), world)
    return (t[0] / t[1]).item() if t[1] > 0 else float("nan")
