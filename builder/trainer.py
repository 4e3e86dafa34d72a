"""`build train`: the loop the notes teach (zero_grad, forward, loss, backward, step, validate), for one
network (supervised or language model) or a generator/discriminator pair (GAN).

Everything else hangs off that loop in small pieces: data (data/), loss and metrics (losses.py,
metrics.py), optimizer and schedule (optim.py), initial weights (initializers.py), the run folder and
console (runlog.py), checkpoints (checkpoint.py, Book below) and several processes (distributed.py).
"""
from __future__ import annotations

import contextlib
import copy
import math
import signal
import sys
import threading
import time
import types
from pathlib import Path

import torch
import torch.nn as nn

from . import checkpoint
from .data import check_data, load_data
from .distributed import World, all_sum, join, leave
from .errors import UserError, did_you_mean
from .initializers import apply_init, check_init
from .loss_terms import check_terms, is_terms, objective
from .losses import make_loss
from .metrics import make_metric
from .optim import Schedule, make_optimizer
from .preparation import statistics_for
from .runlog import Console, RunFolder, TensorBoard, read_resolved
from .types import build_info

TRAIN_KEYS = {
    "data", "loss", "optimizer", "schedule", "init", "epochs", "metrics", "early_stopping", "mode", "seed",
    "clip_grad", "precision", "gan", "checkpoint",
}
MODES = ("supervised", "language_model", "gan")
GAN_LOSSES = ("minimax", "non_saturating", "wgan", "wgan_gp")


class TrainingDiverged(UserError):
    """The loss became NaN or Inf; the message names the epoch and step, and the last good checkpoint."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped the run, after its last finished epoch was saved; `str()` says
    where, and how to go on; `signum` is the signal (the command exits with 128 + signum)."""

    def __init__(self, message, signum=signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)


# ----------------------------------------------------------------------------------------------------
# entry points


def train(spec=None, *, resume=None, run_dir=None, device="auto", quiet=False, log_json=False,
          compile=False, tensorboard=False, callback=None, overwrite=False, **overrides):
    """Train a spec by its `train:` section; returns (module, history, run_dir).

    `spec` is a builder.Spec or a YAML path; `resume` a run folder to continue from its last.pt. A fresh
    run refuses a folder that already holds a run (one finished epoch or more) unless `overwrite`. Keyword
    overrides replace keys of the train section: `epochs=3`, or `**{"optimizer.lr": 0.01}`. `callback(row)`
    is called after every epoch with its metrics row; returning True stops the run there (like a kill
    after that epoch's checkpoint). For a GAN spec, `module` is a dict of the two networks.
    """
    from .compile import compile_all
    from .spec import Spec, load

    if resume is not None:
        resolved = read_resolved(resume)
        spec = load(_spec_source(resume, resolved), overrides=resolved.get("params") or {})
        cfg, run_dir = resolved["train"], Path(resume)
    else:
        if spec is None:
            raise UserError("train: give a spec, or resume=<run folder>")
        if not isinstance(spec, Spec):
            spec = load(spec)
        cfg = copy.deepcopy(spec.train)
    cfg = apply_overrides(cfg, overrides)
    check_config(cfg)
    torch.manual_seed(seed_of(cfg))  # the networks' default initial weights follow the seed
    networks = compile_all(spec)
    spec_text = Path(spec.path).read_text(encoding="utf-8") if spec.path else None
    resolved = {**spec.resolved, "spec_path": str(spec.path) if spec.path else None, "train": cfg}
    return fit(networks, cfg, name=spec.name, run_dir=run_dir, resume=resume is not None, device=device,
               quiet=quiet, log_json=log_json, compile=compile, tensorboard=tensorboard, callback=callback,
               spec_text=spec_text, resolved=resolved, overwrite=overwrite)


def _spec_source(run_dir, resolved):
    """The spec a run was started from: its original file while unchanged (its `use:` imports resolve
    there), else the copy in the run folder."""
    saved = Path(run_dir) / "spec.yaml"
    original = Path(resolved["spec_path"]) if resolved.get("spec_path") else None
    if original and original.is_file() and (not saved.exists() or original.read_text() == saved.read_text()):
        return original
    if saved.exists():
        return saved
    raise UserError(f"--resume {run_dir}: the run folder has no spec.yaml to rebuild the network from")


def fit(networks, cfg, *, name="model", run_dir=None, resume=False, device="auto", quiet=False,
        log_json=False, compile=False, tensorboard=False, callback=None, spec_text=None, resolved=None,
        overwrite=False):
    """Train ready-built networks ({"model": m} or {"generator": g, "discriminator": d}) by `cfg`."""
    if isinstance(networks, nn.Module):
        networks = {"model": networks}
    check_config(cfg)
    device = pick_device(device)
    world = join(device)
    run = None
    try:
        # locked against a second training; a finished run is not silently overwritten
        run = RunFolder(run_dir or Path("runs") / name, enabled=world.is_main, resume=resume, overwrite=overwrite)
        run.write_spec(spec_text, resolved or {"name": name, "params": {}, "train": cfg})
        console = Console(quiet, log_json, enabled=world.is_main)
        seed = seed_of(cfg)
        torch.manual_seed(seed)
        data = load_data(_data_cfg(cfg))
        for net in networks.values():
            net.to(device)
            apply_init(net, cfg.get("init"), skip=build_info(net).node_inits if build_info(net) else {})
        if world.active:  # same initial weights everywhere (DDP copies rank 0's), own dropout and noise
            torch.manual_seed(seed + 1_000_003 * world.rank)
        mode = mode_of(cfg, networks, data)
        loop = train_gan if mode == "gan" else train_supervised
        book = Book(cfg, run, console, world, seed, resume, callback, tensorboard)
        try:
            with stop_on_signals(book):
                result = loop(networks, data, cfg, book, device, world, compile)
        except KeyboardInterrupt:
            book.write_checkpoints(wait=True)  # an interrupt keeps the last finished epoch
            raise TrainingInterrupted(book.interrupted(), book.stop_signal or signal.SIGINT) from None
        except BaseException:
            with contextlib.suppress(Exception):  # keep the last finished epoch; report the first error
                book.write_checkpoints(wait=True)
            raise
        finally:
            run.close()
        for net in networks.values():
            net.eval()  # handed back for inference: dropout off, norms on their running statistics
        return result, book.history, run.path
    finally:
        if run is not None:
            run.release()
        leave(world, finished=sys.exc_info()[0] is None)


# ----------------------------------------------------------------------------------------------------
# the loops


def train_supervised(networks, data, cfg, book, device, world, compile_model):
    """One network, inputs -> prediction -> loss against the target (language models: next token)."""
    model = only_network(networks)
    adapt_inputs(model, data)
    book.input_preparation = statistics_for(_spec_inputs(model),
                                            data.info.get("input_statistics") or {}, data.train.n_inputs)
    to_device(data, device)
    loss_fn = objective(cfg.get("loss", "cross_entropy" if book.mode == "language_model" else "mse"), model)
    metric_cfgs = cfg.get("metrics", ["perplexity"] if book.mode == "language_model" else [])
    dcfg = _data_cfg(cfg)
    batch_size, shuffle, drop_last = dcfg.get("batch_size", 32), dcfg.get("shuffle", True), dcfg.get("drop_last", False)
    per_rank = len(data.train) // world.size
    steps_per_epoch = per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
    optimizer = make_optimizer(model, cfg.get("optimizer"))
    schedule = Schedule(optimizer, cfg.get("schedule"), steps_per_epoch, book.epochs)
    autocast, scaler = mixed_precision(cfg.get("precision", "fp32"), device, book.console)
    net = wrap(model, device, world, compile_model)
    parts = {"networks": {"model": model}, "optimizers": {"model": optimizer},
             "schedules": {"model": schedule}, "scaler": scaler}
    book.start(parts)
    clip = cfg.get("clip_grad") or {}

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
            with autocast, guard:
                loss = loss_fn(net(*inputs), inputs, target)
            loss_value = loss.item()
            book.check_finite(loss_value, epoch, step)
            scaler.scale(loss).backward()
            clip_gradients(model, optimizer, scaler, clip)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            book.stop_point()
            loss_sum += loss_value * len(target)
            seen += len(target)
            if step % 10 == 0 and hasattr(batches, "set_postfix"):
                batches.set_postfix(loss=f"{loss_value:.4g}", refresh=False)

        row = {"epoch": epoch + 1, "train.loss": mean_over_ranks(loss_sum, seen, world)}
        if data.val is not None:
            row.update(evaluate(model, data.val, loss_fn, metric_cfgs, batch_size, world, autocast, "val."))
        row["lr"] = schedule.lr()
        row["seconds"] = time.perf_counter() - t0
        schedule.epoch_end(row)
        if book.epoch_end(row):
            break
        book.stop_point()

    book.finish(lambda: evaluate(model, data.test, loss_fn, metric_cfgs, batch_size, world, autocast, "")
                if data.test is not None else None)
    return model


def train_gan(networks, data, cfg, book, device, world, compile_model):
    """The notes' GAN: k discriminator (critic) steps on real and generated batches, then one generator
    step. Losses: minimax (Goodfellow 2014), non_saturating, wgan (weight clipping), wgan_gp."""
    G, D = networks["generator"], networks["discriminator"]
    gan = dict(cfg.get("gan") or {})
    kind = gan.get("loss", "minimax")
    k = int(gan.get("k", gan.get("n_critic", 5 if kind.startswith("wgan") else 1)))
    clip_c, gp_lambda = float(gan.get("clip", 0.01)), float(gan.get("gp_lambda", 10.0))
    adapt_inputs(D, data)
    to_device(data, device)
    dcfg = _data_cfg(cfg)
    batch_size, shuffle = dcfg.get("batch_size", 64), dcfg.get("shuffle", True)
    latent_shape = static_shape(G, 0)
    steps_per_epoch = max(len(data.train) // world.size // batch_size // k, 1)  # generator steps
    opt_cfgs = per_network(cfg.get("optimizer"), ("generator", "discriminator"))
    sched_cfgs = per_network(cfg.get("schedule"), ("generator", "discriminator"))
    opt_G, opt_D = make_optimizer(G, opt_cfgs["generator"]), make_optimizer(D, opt_cfgs["discriminator"])
    sched_G = Schedule(opt_G, sched_cfgs["generator"], steps_per_epoch, book.epochs)
    sched_D = Schedule(opt_D, sched_cfgs["discriminator"], steps_per_epoch * k, book.epochs)
    net_G, net_D = wrap(G, device, world, compile_model), wrap(D, device, world, compile_model)
    book.start({"networks": {"generator": G, "discriminator": D},
                "optimizers": {"generator": opt_G, "discriminator": opt_D},
                "schedules": {"generator": sched_G, "discriminator": sched_D}, "scaler": None})

    def noise(n):
        return torch.randn(n, *latent_shape, device=device)

    for epoch in range(book.first_epoch, book.epochs):
        t0 = time.perf_counter()
        G.train(), D.train()
        order = data.train.order(shuffle, book.seed, epoch, world.rank, world.size)
        batches = book.console.bar(data.train.batches(batch_size, order, drop_last=True),
                                   len(order) // batch_size, epoch + 1, book.epochs)
        sums = {"d_loss": 0.0, "g_loss": 0.0}
        counts = {"d_loss": 0, "g_loss": 0}
        for step, (real, *_) in enumerate(batches):
            # discriminator (critic) step on one real and one generated batch
            opt_D.zero_grad(set_to_none=True)
            fake = net_G(noise(len(real))).detach().reshape(real.shape)
            d_real, d_fake = first_output(net_D(real)), first_output(net_D(fake))
            d_loss = discriminator_loss(kind, d_real, d_fake)
            if kind == "wgan_gp":
                d_loss = d_loss + gp_lambda * gradient_penalty(net_D, real, fake)
            book.check_finite(d_loss.item(), epoch, step)
            d_loss.backward()
            opt_D.step()
            sched_D.step()
            if kind == "wgan":
                with torch.no_grad():
                    for p in D.parameters():
                        p.clamp_(-clip_c, clip_c)
            sums["d_loss"] += d_loss.item()
            counts["d_loss"] += 1
            if (step + 1) % k:
                continue
            # generator step: D is fixed (only G's optimizer steps)
            opt_G.zero_grad(set_to_none=True)
            d_gen = first_output(net_D(net_G(noise(len(real))).reshape(real.shape)))
            g_loss = generator_loss(kind, d_gen)
            book.check_finite(g_loss.item(), epoch, step)
            g_loss.backward()
            opt_G.step()
            sched_G.step()
            sums["g_loss"] += g_loss.item()
            counts["g_loss"] += 1
            book.stop_point()

        row = {"epoch": epoch + 1}
        row.update({f"train.{n}": mean_over_ranks(sums[n], counts[n], world) for n in sums})
        if data.val is not None:
            row["val.mean_distance"] = mean_distance(G, data.val, noise)
        row["lr"] = sched_G.lr()
        row["seconds"] = time.perf_counter() - t0
        sched_G.epoch_end(row), sched_D.epoch_end(row)
        if book.epoch_end(row):
            break
        book.stop_point()

    book.finish(lambda: {"mean_distance": mean_distance(G, data.test, noise)} if data.test is not None else None)
    return {"generator": G, "discriminator": D}


# ----------------------------------------------------------------------------------------------------
# pieces of the loops


@torch.no_grad()
def evaluate(model, dataset, loss_fn, metric_cfgs, batch_size, world, autocast, prefix):
    """Mean loss and metrics over a whole split; each rank takes its share and the sums are added up."""
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
        for _, m in metrics:
            m.update(prediction.float().cpu(), target.cpu())
    totals = all_sum(torch.stack([loss_sum, torch.tensor(float(seen), dtype=torch.float64)]), world)
    out = {f"{prefix}loss": (totals[0] / totals[1]).item()}
    for name, m in metrics:
        m.sums = all_sum(m.sums, world)  # every rank calls it, even one whose share was empty
        out[f"{prefix}{name}"] = m.value()
    model.train(was_training)
    return out


def discriminator_loss(kind, d_real, d_fake):
    """Minimax/non-saturating: BCE of D's probabilities (real -> 1, fake -> 0). WGAN: -(E D(x) - E D(G(z)))."""
    if kind in ("wgan", "wgan_gp"):
        return d_fake.mean() - d_real.mean()
    bce = nn.functional.binary_cross_entropy
    return bce(d_real.clamp(1e-7, 1 - 1e-7), torch.ones_like(d_real)) + \
        bce(d_fake.clamp(1e-7, 1 - 1e-7), torch.zeros_like(d_fake))


def generator_loss(kind, d_gen):
    """Minimax: minimise log(1 - D(G(z))) (the notes' `-BCE(D(G(z)), 0)`); non-saturating: -log D(G(z));
    WGAN: -E D(G(z))."""
    if kind in ("wgan", "wgan_gp"):
        return -d_gen.mean()
    p = d_gen.clamp(1e-7, 1 - 1e-7)
    if kind == "minimax":
        return torch.log1p(-p).mean()
    return -torch.log(p).mean()


def gradient_penalty(D, real, fake):
    """WGAN-GP: E (||grad_x D(x_hat)||_2 - 1)^2 at x_hat = eps x + (1 - eps) x_fake, eps ~ U(0, 1)."""
    eps = torch.rand(len(real), *([1] * (real.dim() - 1)), device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    score = first_output(D(x_hat))
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    return ((grad.reshape(len(real), -1).norm(2, dim=1) - 1) ** 2).mean()


@torch.no_grad()
def mean_distance(G, dataset, noise):
    """||mean of generated samples - mean of real samples||_2: how far the generator's mean is off."""
    real = torch.cat([b[0] for b in dataset.batches(4096, torch.arange(len(dataset)))])
    was_training = G.training
    G.eval()
    fake = G(noise(len(real))).reshape(real.shape)
    G.train(was_training)
    return (fake.float().mean(0) - real.float().mean(0)).norm().item()


_UNGUARDED = contextlib.nullcontext()  # later batches: no per-step context manager to build


@contextlib.contextmanager
def first_batch_check(inputs, target, cfg, active):
    """The first batch of a run: data that does not fit the network or the loss (targets of the wrong
    shape or dtype, features the first layer cannot take) is a one-line UserError naming the shapes and dtypes,
    instead of torch's traceback. Later batches run unguarded (same shapes and dtypes)."""
    if not active:
        yield
        return
    try:
        yield
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        loss = cfg.get("loss", "the loss")
        loss = loss.get("type", "the loss") if isinstance(loss, dict) else loss
        if isinstance(loss, list):  # loss terms
            loss = " + ".join(str(t.get("type", "?")) if isinstance(t, dict) else "?" for t in loss)
        have = ", ".join(f"{list(t.shape)} {str(t.dtype).removeprefix('torch.')}" for t in inputs)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"train: the data does not fit the network or the loss {loss} (inputs {have}; "
                        f"target {list(target.shape)} {str(target.dtype).removeprefix('torch.')}): {first}") from None


def clip_gradients(model, optimizer, scaler, clip):
    """`clip_grad: {norm: 1.0}` (global L2 norm) or `{value: 0.5}` (each element)."""
    if not clip:
        return
    scaler.unscale_(optimizer)
    if "norm" in clip:
        nn.utils.clip_grad_norm_(model.parameters(), float(clip["norm"]))
    if "value" in clip:
        nn.utils.clip_grad_value_(model.parameters(), float(clip["value"]))


class Book:
    """The bookkeeping after each epoch: history, best and early stopping, checkpoints, files, console.

    Checkpoints hold everything the next epoch depends on (weights, optimizer and schedule states, the RNG
    state, the history and the early-stopping counters), so a resumed run repeats the uninterrupted one.
    Every epoch's state is snapshotted, but written at most once per `checkpoint.every_seconds` (default
    5; 0 = every epoch) and always at the end, on a NaN stop or on an interrupt: epochs of a few
    milliseconds do not wait for the disk, and a SIGKILL loses at most those seconds."""

    def __init__(self, cfg, run, console, world, seed, resume, callback, tensorboard):
        self.cfg, self.run, self.console, self.world, self.seed = cfg, run, console, world, seed
        self.epochs = int(cfg.get("epochs", 10))
        self.mode = cfg.get("mode")
        stop = dict(cfg.get("early_stopping") or {})
        self.patience = stop.get("patience")
        self.monitor = stop.get("monitor", "val.loss")
        self.min_delta = float(stop.get("min_delta", 0.0))
        self.maximize = stop.get("mode", "max" if self.monitor.split(".")[-1] in
                                 ("accuracy", "r2") or self.monitor.split(".")[-1].startswith("top") else "min") == "max"
        self.best, self.bad, self.best_epoch = None, 0, 0
        self.history = []
        self.first_epoch = 0
        self.resume, self.callback = resume, callback
        self.tb = TensorBoard(run / "events", tensorboard and world.is_main)
        self.parts = None
        self.writer = checkpoint.BackgroundWriter()
        self.pending = {}  # file name -> snapshot not yet handed to the writer
        self.every_seconds = float((cfg.get("checkpoint") or {}).get("every_seconds", 5.0))
        self.last_write = -math.inf
        self.saved_epoch = None  # epoch of the newest last.pt handed to the writer
        self.running = False  # between start() and finish(): a signal asks the loop to stop (stop_on_signals)
        self.stop_signal = None

    def start(self, parts):
        """Remember what to checkpoint; when resuming, load it all back from last.pt."""
        self.parts = parts
        if self.world.is_main:  # what killed writes left behind; this process holds the folder's lock
            checkpoint.remove_temporaries(self.run.path)
        self.running = True
        if not self.resume:
            return
        if not (self.run / "last.pt").exists():  # killed before its first checkpoint: nothing to go on from
            self.console.say(f"{self.run.path} has no checkpoint yet: starting at epoch 1")
            return
        state = checkpoint.load(self.run / "last.pt")
        for kind in ("networks", "optimizers", "schedules"):
            for name, obj in parts[kind].items():
                obj.load_state_dict(state[kind][name])
        if parts.get("scaler") is not None and state.get("scaler"):
            parts["scaler"].load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if torch.cuda.is_available() and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.history = list(state["history"])
        self.best, self.bad, self.best_epoch = state["monitor"]["best"], state["monitor"]["bad"], state["monitor"]["best_epoch"]
        self.first_epoch = int(state["epoch"])
        self.saved_epoch = self.first_epoch
        self.console.say(f"resuming {self.run.path} at epoch {self.first_epoch + 1}")

    def stop_point(self):
        """Where the loops may stop for a Ctrl-C or SIGTERM received meanwhile: between steps, and after
        an epoch's checkpoint is handed on (not inside tqdm, torch or a file write)."""
        if self.stop_signal is not None:
            raise KeyboardInterrupt

    def check_finite(self, loss_value, epoch, step):
        if not math.isfinite(loss_value):
            self.write_checkpoints(wait=True)
            self.finish_files()
            last = self.run / "last.pt"
            kept = f"; last good checkpoint: {last}" if last.exists() else ""
            raise TrainingDiverged(f"loss is {loss_value} at epoch {epoch + 1}, step {step + 1}{kept}")

    def epoch_end(self, row) -> bool:
        """Record the epoch; return True when training should stop."""
        self.history.append(row)
        value = row.get(self.monitor)
        improved = value is not None and math.isfinite(value) and (
            self.best is None or (value > self.best + self.min_delta if self.maximize
                                  else value < self.best - self.min_delta))
        if improved:
            self.best, self.bad, self.best_epoch = value, 0, row["epoch"]
        else:
            self.bad += 1
        if self.world.is_main:
            state = self.state(row["epoch"])
            history = state.pop("history")
            state = checkpoint.snapshot(state)
            state["history"] = list(history)  # rows are never changed once written; the list grows
            self.pending["last.pt"] = state
            if improved or value is None:
                self.pending["best.pt"] = state
            if time.monotonic() - self.last_write >= self.every_seconds:
                self.write_checkpoints()
            self.run.write_metrics(self.history)
        self.console.epoch_done(row)
        self.tb.epoch_done(row)
        stop = self.patience is not None and self.bad >= int(self.patience)  # as Keras and Lightning count
        if stop:
            self.console.say(f"early stopping: {self.monitor} has not improved for {self.bad} epochs "
                             f"(best {self.best:.4g} at epoch {self.best_epoch})")
        if self.callback is not None and self.callback(row):
            stop = True
        return stop

    def write_checkpoints(self, wait=False):
        """Hand the pending snapshots to the background writer (the previous write finishes first).

        best.pt goes first: a kill between the two writes leaves a last.pt older than best.pt, and the
        resumed run replays (and rewrites) that best epoch. The other order would leave a stale best.pt
        that the resumed run believes current, and hands back at the end."""
        if self.pending:
            self.saved_epoch = self.pending.get("last.pt", {}).get("epoch", self.saved_epoch)
            names = sorted(self.pending, key=lambda n: n != "best.pt")
            jobs = [(self.pending[n], self.run / n) for n in names]
            self.pending = {}  # handed on even when the previous write failed: its error is the one to report
            self.writer.submit(jobs)
            self.last_write = time.monotonic()
        if wait:
            self.writer.wait()

    def interrupted(self) -> str:
        """The message of an interrupted run (its finished epochs are on disk by now)."""
        where = self.run.path
        epoch = self.saved_epoch if self.saved_epoch is not None else (self.first_epoch or None)
        if epoch is None:
            return f"interrupted in epoch 1, before any checkpoint; start again (--resume {where} does too)"
        return f"interrupted: epoch {epoch} of {self.epochs} is saved in {where / 'last.pt'}; " \
               f"continue with: build train --resume {where}"

    def state(self, epoch):
        parts = self.parts
        return {
            "epoch": epoch,
            "networks": {n: m.state_dict() for n, m in parts["networks"].items()},
            "optimizers": {n: o.state_dict() for n, o in parts["optimizers"].items()},
            "schedules": {n: s.state_dict() for n, s in parts["schedules"].items()},
            "scaler": parts["scaler"].state_dict() if parts.get("scaler") is not None else None,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "history": self.history,
            "monitor": {"best": self.best, "bad": self.bad, "best_epoch": self.best_epoch},
            "seed": self.seed,
            "input_preparation": getattr(self, "input_preparation", None) or {},
        }

    def finish(self, test_fn):
        """After the last epoch: back to the best weights (if a validation split chose them), test, plot."""
        self.stop_point()
        self.running = False
        self.write_checkpoints(wait=True)
        best = self.run / "best.pt"
        if self.best is not None:  # the same on every rank: their metrics are all-reduced
            state = checkpoint.load(best) if self.world.is_main else None
            state = _broadcast(state, self.world)
            for name, m in self.parts["networks"].items():
                m.load_state_dict(state["networks"][name])
        test = test_fn()
        if test is not None:
            self.run.write_json("test.json", test)
            self.console.say("test: " + "  ".join(f"{k} {v:.4g}" for k, v in test.items()))
        self.finish_files()

    def finish_files(self):
        self.run.close()
        if self.world.is_main:
            self.run.plot(self.history)
        self.tb.close()


@contextlib.contextmanager
def stop_on_signals(book):
    """While the loop runs, Ctrl-C (SIGINT) or SIGTERM asks it to stop at its next stop point (after the
    current step); the last finished epoch is saved and TrainingInterrupted raised. A signal before the
    loop starts, or a second one, interrupts at once. Only the main thread can set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if not book.running or book.stop_signal is not None:
            raise KeyboardInterrupt
        book.stop_signal = signum
        book.console.warn(f"{signal.Signals(signum).name}: stopping after this step "
                          "(saving the last finished epoch); again to stop at once")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _broadcast(obj, world: World):
    """Rank 0's object to every rank (the best weights after training)."""
    if not world.active:
        return obj
    import torch.distributed as dist
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ----------------------------------------------------------------------------------------------------
# configuration and plumbing


def check_train(cfg) -> None:
    """Check a spec's train section without reading data or training (for `build check`): keys, names
    and options of data, loss, metrics, optimizer, schedule and init; a one-line UserError if wrong."""
    if not cfg:
        return
    check_config(cfg)
    check_data(_data_cfg(cfg))
    gan = cfg.get("mode") == "gan" or "gan" in cfg
    if is_terms(cfg.get("loss")):
        check_terms(cfg["loss"])
    else:
        make_loss(cfg.get("loss", "mse"))
    for m in cfg.get("metrics", []):
        make_metric(m)
    names = ("generator", "discriminator") if gan else ("model",)
    optimizers = per_network(cfg.get("optimizer"), names) if gan else {"model": cfg.get("optimizer")}
    schedules = per_network(cfg.get("schedule"), names) if gan else {"model": cfg.get("schedule")}
    for name in names:
        make_optimizer(None, optimizers[name])  # the options only: parameter groups match spec paths later
        stand_in = types.SimpleNamespace(param_groups=[{"lr": 1.0}])
        Schedule(stand_in, schedules[name], 1, cfg.get("epochs", 10))
    check_init(cfg.get("init"))


def check_config(cfg):
    """One-line errors for unknown or missing keys of the train section."""
    if not isinstance(cfg, dict):
        raise UserError("train: the train section must be a mapping")
    for key in cfg:
        if key not in TRAIN_KEYS:
            hint = did_you_mean(key, TRAIN_KEYS)
            raise UserError(f"train: unknown key {key!r}" + (f" ({hint})" if hint else
                                                              f"; known: {', '.join(sorted(TRAIN_KEYS))}"))
    if "data" not in cfg or not _data_cfg(cfg).get("source"):
        raise UserError("train.data: say where the data comes from, e.g. data: {source: digits}")
    if cfg.get("mode") is not None and cfg["mode"] not in MODES:
        raise UserError(f"train.mode: unknown mode {cfg['mode']!r}; known: {', '.join(MODES)}")
    epochs = cfg.get("epochs", 10)
    if not isinstance(epochs, int) or epochs < 0:
        raise UserError(f"train.epochs must be a whole number >= 0, got {epochs!r}")
    gan = cfg.get("gan") or {}
    if gan.get("loss", "minimax") not in GAN_LOSSES:
        raise UserError(f"train.gan.loss: unknown loss {gan['loss']!r}; known: {', '.join(GAN_LOSSES)}")
    unknown = set(gan) - {"loss", "k", "n_critic", "clip", "gp_lambda"}
    if unknown:
        raise UserError(f"train.gan: unknown key(s) {sorted(unknown)}; known: loss, k, n_critic, clip, gp_lambda")
    if set(cfg.get("checkpoint") or {}) - {"every_seconds"}:
        raise UserError("train.checkpoint: the only key is every_seconds (0 = write every epoch)")
    clip = cfg.get("clip_grad") or {}
    if set(clip) - {"norm", "value"}:
        raise UserError("train.clip_grad: use {norm: N} and/or {value: V}")
    if cfg.get("precision", "fp32") not in ("fp32", "bf16", "fp16"):
        raise UserError(f"train.precision: use fp32, bf16 or fp16, not {cfg['precision']!r}")


def apply_overrides(cfg, overrides):
    """`epochs=3` or `**{"optimizer.lr": 0.01}`: set keys of the train section by dotted path."""
    cfg = copy.deepcopy(cfg)
    for dotted, value in overrides.items():
        keys = dotted.removeprefix("train.").split(".")
        node = cfg
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {} if node.get(k) is None else {"type": node[k]}
            node = node[k]
        node[keys[-1]] = value
    return cfg


def _data_cfg(cfg):
    data = cfg.get("data") or {}
    return {"source": data} if isinstance(data, str) else dict(data)


def seed_of(cfg):
    return int(cfg.get("seed", _data_cfg(cfg).get("seed", 0)))


def mode_of(cfg, networks, data):
    mode = cfg.get("mode")
    if mode is None:
        mode = "gan" if {"generator", "discriminator"} <= set(networks) else \
            "language_model" if _data_cfg(cfg).get("source") == "text" else "supervised"
    cfg["mode"] = mode
    if mode == "gan" and not {"generator", "discriminator"} <= set(networks):
        raise UserError(f"train.mode gan needs networks generator and discriminator, spec has {sorted(networks)}")
    if mode != "gan" and len(networks) != 1:
        raise UserError(f"train.mode {mode} trains one network; spec has {sorted(networks)}")
    return mode


def only_network(networks):
    return next(iter(networks.values()))


def per_network(cfg, names):
    """One optimizer/schedule config for both GAN networks, or {generator: ..., discriminator: ...}."""
    if isinstance(cfg, dict) and set(cfg) and set(cfg) <= set(names):
        return {n: cfg.get(n) for n in names}
    return {n: copy.deepcopy(cfg) for n in names}


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
    specs = _spec_inputs(model)
    if not specs:
        raise UserError("a GAN generator must declare its latent input shape (spec inputs)")
    shape = tuple(specs[i].shape[1:])
    if not all(isinstance(d, int) for d in shape):
        raise UserError(f"generator input {specs[i].name} needs a static shape, got {specs[i].shape}")
    return shape


def adapt_inputs(model, data):
    """View the data's inputs in the shapes the network declares when only the layout differs (digits'
    1x8x8 pixels for an MLP taking 64 features, a window of tau values as tau x 1 for an RNN)."""
    specs = _spec_inputs(model)
    if not specs:
        return
    sample = data.train.sample(1)
    shapes = []
    for i in range(data.train.n_inputs):
        if i >= len(specs):
            shapes.append(None)
            continue
        want = tuple(specs[i].shape[1:])
        have = tuple(sample[i].shape[1:])
        if want == have or not all(isinstance(d, int) for d in want):
            shapes.append(None)
        elif math.prod(want) == math.prod(have):
            shapes.append(want)
        else:
            raise UserError(f"data gives input {specs[i].name} samples of shape {list(have)}, "
                            f"the network wants {list(want)}")
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


def _spec_inputs(model):
    """The TensorSpecs of a module made by builder.build (None for another module)."""
    info = build_info(model)
    return info.inputs if info else None
