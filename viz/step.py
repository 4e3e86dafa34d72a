"""One training step of a spec, for the backward picture: a batch, weights, a loss, the recorded graph.

The batch comes from the spec's training data (`train.data`, first rows of the training split), another
train source (`--data`) or a .npz of inputs (`--inputs`, viz.step_inputs), and the loss from the spec's
TrainConfig; without them the inputs are random tensors of the spec's input shapes and the loss is the
mean squared distance of the outputs to a fixed random target (a stand-in that still sends a gradient to
every parameter used; viz.artefacts says so in the title).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from builder.shapes.dimenv import nearest_allowed
from builder.core.types import records, spec_inputs
from viz.artefacts import BN_MIN_VALUES, batch_words, warnings_of, watch
from viz.autograd_walk import BackwardTrace, record_backward

DEFAULT_SIZE = 32  # a symbolic dim that declares no `example:` (and no data gives) takes at least this
LARGE_MODEL = 20_000_000  # above this many parameters data sequences are cut shorter (see max_seq)
MAC_BUDGET = 2e9  # the default batch keeps one forward pass near this many multiply-accumulates
MAX_BATCH = 64  # the batch grows past the budget for BatchNorm, but never past this


def max_seq(net) -> int:
    """Data sequences are cut to this many steps (32, or 16 for large models): one cheap step suffices."""
    return 16 if net.total_params > LARGE_MODEL else 32


def input_sizes(net, overrides: dict | None = None) -> dict:
    """The size of each symbolic dim (but the batch) that random inputs take: `--size NAME=N` first, then
    the dim's declared `example:`, else DEFAULT_SIZE (raised to the smallest size the network allows, a
    multiple where it needs one). Never the minimum just because it is cheap: at the minimum a ResNet's
    last stage sees 1 x 1 maps and its BatchNorms normalise over the batch alone."""
    from builder.core.errors import UserError

    dims = net.graph.graph.get("dims") or {}
    names = [d for t in net.inputs for d in t.shape[1:] if isinstance(d, str)]
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise UserError(f"--size {unknown[0]}=...: the network's inputs have no dim {unknown[0]!r} "
                        f"(their dims: {', '.join(dict.fromkeys(names)) or 'none'})")
    sizes = {}
    for name in names:
        known = dims.get(name) or {"min": 1, "max": None, "multiple_of": 1, "example": None}
        if name in overrides:
            want = overrides[name]
            got = nearest_allowed(want, known["min"], known["max"], known["multiple_of"])
            if got != want:
                raise UserError(f"--size {name}={want}: the network allows {name} >= {known['min']}"
                                + (f", <= {known['max']}" if known["max"] is not None else "")
                                + (f", a multiple of {known['multiple_of']}" if known["multiple_of"] > 1 else "")
                                + f" (nearest: {got})")
            sizes[name] = want
        elif known.get("example") is not None:
            sizes[name] = int(known["example"])
        else:
            sizes[name] = nearest_allowed(DEFAULT_SIZE, known["min"], known["max"], known["multiple_of"])
    return sizes


def batchnorm_spatial(net, sizes: dict) -> dict:
    """BatchNorm node -> values per channel per example it normalises over at these sizes (1 for
    BatchNorm1d on [B, C], H*W for BatchNorm2d on [B, C, H, W])."""
    from builder.shapes.dimexpr import evaluate

    found = {}
    for r in records(net.graph):
        if r.op.startswith("BatchNorm") and r.in_shapes:
            n = 1
            for d in r.in_shapes[0][2:]:
                n *= d if isinstance(d, int) else evaluate(d, {"B": 1, **sizes})
            found[r.path] = n
    return found


def default_batch_size(net, sizes: dict | None = None) -> int:
    """Rows in the batch: 8, fewer (down to 2) when one example costs much (ResNet-50 at 224x224), and
    more (up to MAX_BATCH) when a BatchNorm would otherwise normalise over fewer than BN_MIN_VALUES values
    per channel."""
    from builder.graph.macs import count

    sizes = input_sizes(net) if sizes is None else sizes
    macs = sum(count(net.graph, sizes).values())
    batch = int(min(8, max(2, MAC_BUDGET // max(macs, 1))))
    spatial = batchnorm_spatial(net, sizes)
    if spatial:
        batch = max(batch, min(MAX_BATCH, -(-BN_MIN_VALUES // max(1, min(spatial.values())))))
    return batch


@dataclass
class Step:
    trace: BackwardTrace
    batch_note: str  # where the batch came from, for the picture's title and the CLI
    warnings: list  # why the picture's numbers may be artefacts (viz.artefacts), for title and CLI


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


def random_inputs(inputs, batch_size: int, seed: int = 0, sizes: dict | None = None) -> dict:
    """Random tensors for the spec's TensorSpecs: the first dim -> batch_size, other symbolic dims -> their
    size in `sizes` (input_sizes: the declared examples); integer inputs drawn from their value range
    (token ids below the vocabulary size), 0/1 masks all ones."""
    g = torch.Generator().manual_seed(seed)
    sizes = sizes or {}
    out = {}
    for t in inputs:
        shape = tuple(d if isinstance(d, int) else batch_size if i == 0 else sizes.get(d, DEFAULT_SIZE)
                      for i, d in enumerate(t.shape))
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
    found = training_batches(module, cfg, batch_size, seq_cap, 1)
    if found is None:
        return None
    (inputs, target), note = found[0][0], found[1]
    return inputs, target, note


def training_batches(module, cfg, batch_size: int, seq_cap: int = 32, count: int = 1):
    """([(inputs, target or None)] * count, note): consecutive batches from the start of the training
    split (wrapping around), laid out as the trainer lays them out (`cfg`: a TrainConfig); None
    without training data."""
    if cfg is None:
        return None
    from builder.data import load_data
    from builder.training.setup import adapt_inputs

    data = load_data(dict(cfg.data.options))
    adapt_inputs(module, data)
    n, rows = data.train.n_inputs, len(data.train)
    specs = spec_inputs(module) or []
    batches, cut = [], None
    for k in range(count):
        fields = data.train._gather(torch.arange(k * batch_size, (k + 1) * batch_size) % rows)
        inputs, target = list(fields[:n]), fields[n] if data.train.has_target else None
        for i, t in enumerate(specs[:n]):
            if len(t.shape) > 1 and isinstance(t.shape[1], str) and inputs[i].dim() > 1 \
                    and inputs[i].shape[1] > seq_cap:
                cut = inputs[i].shape[1]
                inputs[i] = inputs[i][:, :seq_cap]
        if cut is not None and target is not None and target.dim() > 1 and target.shape[1] == cut:
            target = target[:, :seq_cap]
        batches.append((inputs, target))
    size = len(batches[0][0][0])
    note = (f"batch of {size} from {cfg.data.source} (train split)" if count == 1 else
            f"{count} batches of {size} from {cfg.data.source} (train split)")
    if cut is not None:
        note += f", sequences cut from {cut} to {seq_cap} steps"
    return batches, note


def shared_callers(graph) -> dict:
    """Module name -> the spec nodes that call it, in graph order, for modules reused with `share:`."""
    callers: dict[str, list[str]] = {}
    for r in records(graph):
        if r.op != "input":
            callers.setdefault(r.share or r.path, []).append(r.path)
    return {m: paths for m, paths in callers.items() if len(paths) > 1}


STAND_IN = "mse to a random target"


def stand_in_loss(output):
    """Half the mean squared distance of each output to a fixed random target (seeded by the output's shape).

    Not mean(output^2): after a LayerNorm that is the same for every input (the normalised output has
    mean 0 and variance 1), so its gradient before the norm is ~0 and the picture would show vanishing
    gradients that training would never see (a Transformer's encoder read 1e-9)."""
    outs = output if isinstance(output, (tuple, list)) else (output,)
    terms = []
    for o in outs:
        if isinstance(o, torch.Tensor) and o.requires_grad and o.is_floating_point():
            g = torch.Generator().manual_seed(1 + o.numel())
            target = torch.randn(o.shape, generator=g).to(o.device)
            terms.append(0.5 * (o.float() - target).pow(2).mean())
    if not terms:
        raise RuntimeError("no output of the network depends on a parameter")
    return sum(terms)


def one_step(spec, network: str | None = None, run: str | None = None, weights: str | None = None,
             batch_size: int | None = None, seed: int | None = None, inputs_file: str | None = None,
             data: str | None = None, sizes: dict | None = None) -> Step:
    """Build the module with the weights training starts from (or the given ones), run forward and
    backward once on one batch, and record the autograd graph (on step_threads() threads).

    inputs_file: a .npz of the network's inputs (and optionally `target`); data: a train source name
    used instead of the spec's `train.data` (for a network whose own data does not fit); sizes: dim name ->
    size for random inputs (`--size`), instead of the declared examples."""
    threads = torch.get_num_threads()
    torch.set_num_threads(step_threads())
    try:
        s = set_up(spec, network, run, weights, batch_size, seed, 1, inputs_file, data, sizes)
        inputs, target = s.batches[0]
        named = {t.name: x for t, x in zip(s.net.inputs, inputs)}
        try:
            with watch(s.module) as seen:
                trace = record_backward(s.module, named, lambda out: s.loss_fn(out, target, inputs),
                                        s.loss_name, spec_paths=set(s.net.graph.nodes),
                                        callers=shared_callers(s.net.graph))
        except (RuntimeError, ValueError) as e:  # e.g. BatchNorm on a batch of 1, nothing requiring grad
            from builder.core.errors import UserError
            raise UserError(f"the step on {s.note} failed: {str(e).splitlines()[0]}") from None
        return Step(trace, s.described(seen), s.warnings(seen))
    finally:
        torch.set_num_threads(threads)


@dataclass
class SetUp:
    """What a step needs: the module (in train mode), batches of (inputs, target), the loss of
    (output, target) and where the batches came from."""
    module: torch.nn.Module
    net: object
    batches: list
    loss_fn: object
    loss_name: str
    note: str
    cfg: object  # the TrainConfig used (None without a train section)
    random: bool = False  # the batches are random tensors, not data
    stand_in: bool = False  # the loss is the stand-in (STAND_IN), not the spec's loss on a target

    def described(self, seen) -> str:
        """The note, with what the batch means for BatchNorm (from what the step's hooks saw)."""
        words = batch_words(seen)
        return f"{self.note}; {words}" if words else self.note

    def warnings(self, seen) -> list:
        return warnings_of(seen, self.random, self.stand_in)


def set_up(spec, network=None, run=None, weights=None, batch_size=None, seed=None, count: int = 1,
           inputs_file: str | None = None, data: str | None = None, sizes: dict | None = None) -> SetUp:
    """The module with the weights training starts from (or the given ones), `count` batches and the
    loss, as the trainer would set them up."""
    import builder
    from builder.core.errors import UserError
    from builder.spec.train_section import from_plain
    from builder.training.step import loss_of, prepare
    from builder.weights.sources import load_source
    from viz.step_inputs import npz_batch

    net = spec.network(network)
    sizes = input_sizes(net, sizes)
    batch_size = batch_size or default_batch_size(net, sizes)
    cfg = spec.training  # the trainer's resolved config: same seed, init, data layout, mode and loss
    if data:  # as if the spec's train section named this source
        cfg = from_plain({**(spec.train or {}), "data": {"source": data}}, spec.networks)
    torch.manual_seed((cfg.seed if cfg is not None else 0) if seed is None else seed)
    module = builder.build(spec, network=network)
    _, used = load_source(module, run=run, weights=weights, network=net.name)
    if used is None and cfg is not None and cfg.init:
        prepare(module, cfg)
    module.train()
    found, misfit = None, None
    if inputs_file:
        found = npz_batch(inputs_file, net.inputs, count)
    elif len(spec.networks) == 1:
        try:
            found = training_batches(module, cfg, batch_size, max_seq(net), count)
        except UserError as e:  # data that does not fit the inputs: still draw, on random inputs
            if data:
                raise UserError(f"--data {data}: {str(e).splitlines()[0]}") from None
            misfit = str(e).splitlines()[0]
    if found is not None:
        batches, note = found
    else:
        batches = [([x for x in random_inputs(net.inputs, batch_size, (seed or 0) + k, sizes).values()], None)
                   for k in range(count)]
        shown = ", ".join(f"{k}={v}" for k, v in sizes.items())
        note = f"random inputs, batch {batch_size}" + (f" at {shown}" if shown else "") + (
            "" if count == 1 else f", {count} batches")
        if misfit:
            note += f" (the training data does not fit: {misfit})"
    if batches[0][1] is not None and cfg is not None:
        training_loss, name = loss_of(cfg, module)  # as the trainer computes it (loss terms read the inputs)

        def loss_fn(output, target, inputs=()):
            return training_loss(output, inputs, target)
    else:
        if batches[0][1] is not None:
            note += "; the spec has no train: loss for the target"

        def loss_fn(output, target, inputs=()):
            return stand_in_loss(output)
        name = STAND_IN
    if used:
        note += f"; weights from {used}"
    return SetUp(module, net, batches, loss_fn, name, note, cfg, random=found is None,
                 stand_in=name == STAND_IN)
