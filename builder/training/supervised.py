"""The supervised loop (one network; language models too): zero_grad, forward, loss, backward, step,
validate, as the notes teach it. The pieces it calls (evaluation, clipping, the first-batch guard) follow it."""
from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch
import torch.nn as nn

from builder.core.errors import UserError
from builder.training.loss_terms import describe_loss, objective
from builder.training.metrics import make_metric
from builder.training.optim import Schedule, make_optimizer
from builder.data.preparation import carried, output_statistics, statistics_for
from builder.core.types import build_info, spec_inputs
from builder.training.distributed import all_sum
from builder.spec.train_section import ClipGrad, TrainConfig
from builder.training.setup import adapt_inputs, first_output, mean_over_ranks, mixed_precision, to_device, wrap


def train_supervised(networks, data, cfg, book, device, world, compile_model):
    """One network, inputs -> prediction -> loss against the target (language models: next token)."""
    (model,) = networks.values()
    adapt_inputs(model, data)
    target_stats = data.info.get("target_statistics")
    book.carry.update(  # saved in every checkpoint, applied by export and predict (builder.data.preparation)
        input_preparation=statistics_for(spec_inputs(model), data.info.get("input_statistics") or {},
                                         data.train.n_inputs),
        output_preparation=output_statistics(build_info(model).outputs, target_stats),
        class_labels=data.info.get("classes"), data_layout=data.info.get("layout"))
    book.run.write_json("preparation.json", carried(book.carry))
    unscale = None if target_stats is None else (lambda t: t * target_stats[1].to(t.device) + target_stats[0].to(t.device))
    to_device(data, device)
    # (outputs, inputs, target) -> loss; terms read named outputs; `targets` for cross_entropy's balanced weights
    loss_fn = objective(cfg.loss, model, targets=lambda: data.train.fields[-1].cpu() if not data.train.streamed
                        else np.asarray(data.train.fields[-1][data.train.rows]))
    batch_size, shuffle, drop_last = cfg.data.batch_size, cfg.data.shuffle, cfg.data.drop_last
    per_rank = len(data.train) // world.size
    steps_per_epoch = per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
    optimizer = make_optimizer(model, cfg.optimizer)
    schedule = Schedule(optimizer, cfg.schedule, steps_per_epoch, book.epochs)
    autocast, scaler = mixed_precision(cfg.precision, device, book.console)
    net = wrap(model, device, world, compile_model)
    parts = {"networks": {"model": model}, "optimizers": {"model": optimizer},
             "schedules": {"model": schedule}, "scaler": scaler}
    book.start(parts)

    for epoch in range(book.first_epoch, book.epochs):
        t0 = time.perf_counter()
        model.train()
        order = data.train.order(shuffle, book.seed, epoch, world.rank, world.size)
        batches = book.console.bar(data.train.batches(batch_size, order, drop_last),
                                   math.ceil(len(order) / batch_size), epoch + 1, book.epochs)
        loss_sum, seen = 0.0, 0
        for step, (*inputs, target) in enumerate(batches):
            optimizer.zero_grad(set_to_none=True)
            guard = (first_batch_check(inputs, target, cfg, active=True)
                     if epoch == book.first_epoch and step == 0 else _UNGUARDED)
            with autocast, guard:  # forward and loss
                loss = loss_fn(net(*inputs), inputs, target)
            loss_value = loss.item()
            book.check_finite(loss_value, epoch, step)
            scaler.scale(loss).backward()  # backward, then the optimizer's step
            clip_gradients(model, optimizer, scaler, cfg.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            book.stop_point()
            loss_sum += loss_value * len(target)
            seen += len(target)
            if step % 10 == 0 and hasattr(batches, "set_postfix"):
                batches.set_postfix(loss=f"{loss_value:.4g}", refresh=False)

        # validate, record the epoch (checkpoints, early stopping)
        row = {"epoch": epoch + 1, "train.loss": mean_over_ranks(loss_sum, seen, world)}
        if data.val is not None:
            row.update(evaluate(model, data.val, loss_fn, cfg.metrics, batch_size, world, autocast, "val.", unscale))
        row["lr"] = schedule.lr()
        row["seconds"] = time.perf_counter() - t0
        schedule.epoch_end(row)
        if book.epoch_end(row):
            break
        book.stop_point()

    book.finish(lambda: evaluate(model, data.test, loss_fn, cfg.metrics, batch_size, world, autocast, "", unscale)
                if data.test is not None else None)
    return model


@torch.no_grad()
def evaluate(model, dataset, loss_fn, metric_cfgs, batch_size, world, autocast, prefix, unscale=None):
    """Mean loss and metrics over a whole split; each rank takes its share and the sums are added up.

    With a standardised target, `unscale` brings predictions and targets back to the data's units for
    the metrics (mse, mae, r2 in data units); the loss stays in the units the network trains on."""
    was_training = model.training
    model.eval()
    metrics = [make_metric(m) for m in metric_cfgs]
    loss_sum = torch.zeros((), dtype=torch.float64)
    seen = 0
    order = dataset.order(False, 0, 0, world.rank, world.size, even=False)
    for *inputs, target in dataset.batches(max(batch_size, 256), order):
        with autocast:
            outputs = model(*inputs)
            prediction = first_output(outputs)
            loss = loss_fn(outputs, inputs, target)
        loss_sum += loss.double().cpu() * len(target)
        seen += len(target)
        if unscale is not None:
            prediction, target = unscale(prediction.float()), unscale(target.float())
        for _, m in metrics:
            m.update(prediction.float().cpu(), target.cpu())
    totals = all_sum(torch.stack([loss_sum, torch.tensor(float(seen), dtype=torch.float64)]), world)
    out = {f"{prefix}loss": (totals[0] / totals[1]).item()}
    for name, m in metrics:
        m.sums = all_sum(m.sums, world)  # every rank calls it, even one whose share was empty
        out[f"{prefix}{name}"] = m.value()
    model.train(was_training)
    return out


_UNGUARDED = contextlib.nullcontext()  # later batches: no per-step context manager to build


@contextlib.contextmanager
def first_batch_check(inputs, target, cfg: TrainConfig, active):
    """The first batch of a run: data that does not fit the network or the loss (targets of the wrong
    shape or dtype, features the first layer cannot take) is a one-line UserError naming the shapes and dtypes,
    instead of torch's traceback. Later batches run unguarded (same shapes and dtypes)."""
    if not active:
        yield
        return
    try:
        yield
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        loss = describe_loss(cfg.loss)
        have = ", ".join(f"{list(t.shape)} {str(t.dtype).removeprefix('torch.')}" for t in inputs)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"train: the data does not fit the network or the loss {loss} (inputs {have}; "
                        f"target {list(target.shape)} {str(target.dtype).removeprefix('torch.')}): {first}") from None


def clip_gradients(model, optimizer, scaler, clip: ClipGrad):
    """`clip_grad: {norm: 1.0}` (global L2 norm) or `{value: 0.5}` (each element)."""
    if clip.norm is None and clip.value is None:
        return
    scaler.unscale_(optimizer)
    if clip.norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), clip.norm)
    if clip.value is not None:
        nn.utils.clip_grad_value_(model.parameters(), clip.value)
