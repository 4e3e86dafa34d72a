"""One training step of a spec, for the backward picture: a batch, weights, a loss, the recorded graph.

The batch comes from the spec's training data (`train.data`, first rows of the training split) and the
loss from `train.loss`; without them the inputs are random tensors of the spec's input shapes and the loss
is the mean square of the outputs (a stand-in that still sends a gradient to every parameter used).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from builder.types import build_info, records, spec_inputs
from viz.autograd_walk import BackwardTrace, record_backward

SYMBOLIC_SIZE = 8  # size given to a symbolic dim other than the batch dim when inputs are random
LARGE_MODEL = 20_000_000  # above this many parameters data sequences are cut shorter (see max_seq)
MAC_BUDGET = 2e9  # the default batch keeps one forward pass near this many multiply-accumulates


def max_seq(net) -> int:
    """Data sequences are cut to this many steps (32, or 16 for large models): one cheap step suffices."""
    return 16 if net.total_params > LARGE_MODEL else 32


def default_batch_size(net) -> int:
    """Rows in the batch: 8, fewer (down to 2) when one example costs much (ResNet-50 at 224x224)."""
    macs = sum(r.macs for r in records(net.graph))
    sequence = any(len(t.shape) > 1 and isinstance(t.shape[1], str) for t in net.inputs)
    work = max(macs * (max_seq(net) if sequence else 1), 1)
    return int(min(8, max(2, MAC_BUDGET // work)))


@dataclass
class Step:
    trace: BackwardTrace
    batch_note: str  # where the batch came from, for the picture's title and the CLI


def step_threads() -> int:
    """Threads for the step: the idle cores (at least 1), unless OMP_NUM_THREADS says otherwise.

    One step is small and mostly memory-bound; on a busy machine a second thread only waits for a core
    (GPT-2 small on 2 busy cores: 8 s with one thread, 14 to 20 s with two)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    try:
        idle = (os.cpu_count() or 1) - os.getloadavg()[0]
    except OSError:
        return torch.get_num_threads()
    return max(1, min(torch.get_num_threads(), int(idle)))


def _concrete(dim, batch_size: int, first: bool) -> int:
    if isinstance(dim, int):
        return dim
    return batch_size if first else SYMBOLIC_SIZE


def random_inputs(inputs, batch_size: int, seed: int = 0) -> dict:
    """Random tensors for the spec's TensorSpecs: B -> batch_size, other symbolic dims -> 8; integer
    inputs drawn from their value range (token ids below the vocabulary size), 0/1 masks all ones."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for t in inputs:
        shape = tuple(_concrete(d, batch_size, i == 0) for i, d in enumerate(t.shape))
        dtype = getattr(torch, t.dtype)
        if dtype.is_floating_point:
            out[t.name] = torch.randn(shape, generator=g).to(dtype)
        elif dtype == torch.bool:
            out[t.name] = torch.ones(shape, dtype=torch.bool)
        else:
            low, high = getattr(t, "value_range", None) or (0, 2)
            if high - low <= 2:  # a 0/1 mask: keep every position (an all-padding row would give NaN)
                out[t.name] = torch.full(shape, high - 1, dtype=dtype)
            else:
                out[t.name] = torch.randint(int(low), int(high), shape, generator=g, dtype=dtype)
    return out


def data_batch(module, cfg, batch_size: int, seq_cap: int = 32):
    """(inputs, target or None, note) from the first rows of the training split, laid out as the
    trainer lays them out; None when the spec has no training data (`cfg`: the spec's TrainConfig)."""
    if cfg is None:
        return None
    from builder.training.step import training_batch

    fields, n, has_target = training_batch(module, cfg, batch_size)
    inputs, target = list(fields[:n]), fields[n] if has_target else None
    specs = spec_inputs(module) or []
    note = f"batch of {len(fields[0])} from {cfg.data.source} (train split)"
    cut = None
    for i, t in enumerate(specs[:n]):
        if len(t.shape) > 1 and isinstance(t.shape[1], str) and inputs[i].dim() > 1 \
                and inputs[i].shape[1] > seq_cap:
            cut = inputs[i].shape[1]
            inputs[i] = inputs[i][:, :seq_cap]
    if cut is not None:
        if target is not None and target.dim() > 1 and target.shape[1] == cut:
            target = target[:, :seq_cap]
        note += f", sequences cut from {cut} to {seq_cap} steps"
    return inputs, target, note


def shared_callers(graph) -> dict:
    """Module name -> the spec nodes that call it, in graph order, for modules reused with `share:`."""
    callers: dict[str, list[str]] = {}
    for r in records(graph):
        if r.op != "input":
            callers.setdefault(r.share or r.path, []).append(r.path)
    return {m: paths for m, paths in callers.items() if len(paths) > 1}


def stand_in_loss(output):
    outs = output if isinstance(output, (tuple, list)) else (output,)
    terms = [o.float().pow(2).mean() for o in outs if isinstance(o, torch.Tensor) and o.requires_grad]
    if not terms:
        raise RuntimeError("no output of the network depends on a parameter")
    return sum(terms)


def one_step(spec, network: str | None = None, run: str | None = None, weights: str | None = None,
             batch_size: int | None = None, seed: int | None = None) -> Step:
    """Build the module with the weights training starts from (or the given ones), run forward and
    backward once on one batch, and record the autograd graph (on step_threads() threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(step_threads())
    try:
        return _one_step(spec, network, run, weights, batch_size, seed)
    finally:
        torch.set_num_threads(threads)


def _one_step(spec, network, run, weights, batch_size, seed) -> Step:
    import builder
    from builder.errors import UserError
    from builder.training.step import loss_of, prepare
    from builder.weight_sources import load_source

    net = spec.network(network)
    batch_size = batch_size or default_batch_size(net)
    cfg = spec.training  # the trainer's resolved config: same seed, init, data layout, mode and loss
    torch.manual_seed((cfg.seed if cfg is not None else 0) if seed is None else seed)
    module = builder.build(spec, network=network)
    _, used = load_source(module, run=run, weights=weights, network=net.name)
    if used is None and cfg is not None and cfg.init:
        prepare(module, cfg)
    module.train()
    batch, misfit = None, None
    if len(spec.networks) == 1:
        try:
            batch = data_batch(module, cfg, batch_size, max_seq(net))
        except UserError as e:  # data that does not fit the inputs: still draw, on random inputs
            misfit = str(e).splitlines()[0]
    if batch is not None and batch[1] is not None:
        inputs, target, note = batch
        training_loss, name = loss_of(cfg, module)

        def loss_fn(output):
            return training_loss(output, inputs, target)
    else:
        if batch is not None:
            inputs, _, note = batch
        else:
            inputs = [x for x in random_inputs(net.inputs, batch_size, seed or 0).values()]
            note = f"random inputs, batch {batch_size}"
            if misfit:
                note += f" (the training data does not fit: {misfit})"
        loss_fn, name = stand_in_loss, "mean(output^2)"
    if used:
        note += f"; weights from {used}"
    named = {t.name: x for t, x in zip(net.inputs, inputs)}
    try:
        trace = record_backward(module, named, loss_fn, name, spec_paths=set(net.graph.nodes),
                                callers=shared_callers(net.graph))
    except (RuntimeError, ValueError) as e:  # e.g. BatchNorm on a batch of 1, nothing requiring grad
        raise UserError(f"the step on {note} failed: {str(e).splitlines()[0]}") from None
    return Step(trace, note)
