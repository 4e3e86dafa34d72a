"""`train:` as a typed, frozen config: parsed once (in the spec stage), every default decided here.

Like nanoGPT's config dataclass: one place for each default, with a comment per field. The parser keeps
the source position of every key (the loader's LocDict), so `build check` reports each mistake as
`FILE:LINE:COL: error: train.KEY: message`, all of them in one run; a value given by `--set train.KEY=V`
is named as that `--set`. Loss, optimizer, schedule, metric, initializer and data-source names and
options are checked by their own modules (training/checks.py), which need torch; this module imports none.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping

from builder.core.errors import Diagnostic, UserError, did_you_mean

TRAIN_KEYS = ("data", "loss", "optimizer", "schedule", "init", "epochs", "metrics", "early_stopping", "mode",
              "seed", "clip_grad", "precision", "gan", "checkpoint")
MODES = ("supervised", "language_model", "gan")
GAN_LOSSES = ("minimax", "non_saturating", "wgan", "wgan_gp")
GAN_KEYS = ("loss", "k", "n_critic", "clip", "gp_lambda")
PRECISIONS = ("fp32", "bf16", "fp16")
EARLY_STOPPING_KEYS = ("patience", "monitor", "min_delta", "mode")


@dataclass(frozen=True)
class ModeDefaults:
    """What a mode changes when the section does not say: the only per-mode defaults there are."""
    batch_size: int  # rows per training step
    loss: Any  # train.loss (a GAN's losses are train.gan.loss)
    metrics: tuple  # validation/test metrics besides the loss


MODE_DEFAULTS = {
    "supervised": ModeDefaults(batch_size=32, loss="mse", metrics=()),
    "language_model": ModeDefaults(batch_size=32, loss="cross_entropy", metrics=("perplexity",)),
    "gan": ModeDefaults(batch_size=64, loss="mse", metrics=()),
}


@dataclass(frozen=True)
class DataConfig:
    source: str  # a built-in or file source (builder/data): digits, text, csv, ...
    batch_size: int  # rows per step; per mode (MODE_DEFAULTS) unless given
    shuffle: bool = True  # a new order every epoch (from the seed and the epoch number)
    drop_last: bool = False  # drop a last, smaller batch (a GAN always does)
    options: Mapping = field(default_factory=dict)  # the whole `data:` mapping, for builder.data.load_data


@dataclass(frozen=True)
class GanConfig:
    loss: str = "minimax"  # minimax (Goodfellow 2014), non_saturating, wgan (weight clipping), wgan_gp
    k: int = 1  # discriminator (critic) steps per generator step; 5 for wgan and wgan_gp unless given
    clip: float = 0.01  # wgan: the critic's weights are clamped to [-clip, clip]
    gp_lambda: float = 10.0  # wgan_gp: weight of the gradient penalty


@dataclass(frozen=True)
class EarlyStopping:
    patience: int | None = None  # stop after this many epochs without improvement; None: never
    monitor: str = "val.loss"  # the metrics row's key to watch
    min_delta: float = 0.0  # smaller changes are not improvements
    maximize: bool = False  # from `mode: max|min`; by default max for accuracy, top-k, r2, f1, precision, recall, auc


@dataclass(frozen=True)
class ClipGrad:
    norm: float | None = None  # clip the global L2 norm of the gradients to this
    value: float | None = None  # clip every gradient element to [-value, value]


@dataclass(frozen=True)
class TrainConfig:
    """The resolved `train:` section; `raw` is the section as written (with `--set`), for the run folder."""
    data: DataConfig  # where the data comes from and how it is batched
    mode: str  # supervised, language_model or gan; from the networks and the data unless given
    loss: Any  # a name, {type: name, ...options} (builder/training/losses.py) or a tuple of terms (builder/training/loss_terms.py)
    metrics: tuple  # names or {type: ...} (builder/training/metrics.py); per mode unless given
    optimizer: Any = None  # {type: sgd, lr: ...} (builder/training/optim.py); None: SGD with lr 0.01
    schedule: Any = None  # learning-rate schedule (builder/training/optim.py); None: constant
    init: Any = None  # initial weights (builder/ops/initializers.py); None: torch's defaults
    epochs: int = 10  # epochs in total (a resumed run goes on to this many)
    seed: int = 0  # seeds weights, shuffling and noise; train.seed, else data.seed, else 0
    clip_grad: ClipGrad = ClipGrad()  # gradient clipping; off by default
    precision: str = "fp32"  # fp32, bf16 or fp16 (autocast on CUDA; fp16 with a GradScaler)
    gan: GanConfig = GanConfig()  # the GAN loop's losses and steps (mode gan)
    early_stopping: EarlyStopping = EarlyStopping()  # stop when the monitored metric stops improving
    checkpoint_every_seconds: float = 5.0  # write checkpoints at most this often; 0 = every epoch
    raw: Mapping = field(default_factory=dict, compare=False)  # the plain section, as written
    where: Mapping = field(default_factory=dict, compare=False, repr=False)  # key path -> (line, col) or "--set ..."
    file: str | None = field(default=None, compare=False)  # the spec file the positions are in

    def locate(self, *path) -> tuple:
        """(line, col, node) for an error about train.PATH: the key's position, or the `--set` that gave it."""
        return _locate(self.where, path)


@dataclass(frozen=True)
class TrainDiagnostic(Diagnostic):
    """A `train:` mistake found in the spec stage. It carries the config parsed around the mistakes, so
    `build check` can still check the names and options of the other keys in the same run."""
    key: str | None = None  # the top-level key of train: it is about
    config: TrainConfig | None = field(default=None, compare=False, repr=False)


# ----------------------------------------------------------------------------------------------------
# parsing


def read_train(section, values, file: str | None, overrides: Mapping, networks, errors: list) -> TrainConfig | None:
    """The spec stage's hook: `section` is the loaded `train:` mapping (positions), `values` the same with
    `${...}` resolved and `--set train.*` applied. Appends one Diagnostic per mistake to `errors`."""
    if not values or any(getattr(d, "node", None) == "train" for d in errors):
        return None  # no section, or one whose `${...}` failed (reported): its values are not resolved
    where = _positions(section, ())
    for dotted, value in overrides.items():
        if isinstance(dotted, str) and dotted.startswith("train."):
            where[tuple(dotted.split(".")[1:])] = f"--set {dotted}={value}"
    config, problems = parse(values, networks, where, file)
    located = [(_locate(where, path), path, message, hint) for path, message, hint in problems]
    for (line, col, node), path, message, hint in sorted(located, key=lambda p: (p[0][0] or 0, p[0][1] or 0)):
        errors.append(TrainDiagnostic(message, file, line, col, node, hint, path[0] if path else None, config))
    return config


def from_plain(values, networks) -> TrainConfig:
    """A TrainConfig from plain data (a resumed run's record, keyword overrides); a UserError with one
    `train.KEY: message` line per mistake."""
    config, problems = parse(values, networks, {})
    if problems:
        raise UserError("\n".join(f"{'.'.join(map(str, ('train',) + tuple(p)))}: {m}" + (f" ({h})" if h else "")
                                  for p, m, h in problems))
    return config


def parse(values, networks, where, file=None) -> tuple[TrainConfig | None, list]:
    """(config or None, [(key path, message, hint)]); every mistake is listed, not only the first."""
    problems: list = []

    def bad(path, message, hint=None):
        problems.append((tuple(path), message, hint))

    if not isinstance(values, Mapping):
        bad((), "the train section must be a mapping")
        return None, problems
    for key in values:
        if key not in TRAIN_KEYS:
            hint = did_you_mean(key, TRAIN_KEYS)
            bad((key,), f"unknown key {key!r}", hint or f"known: {', '.join(sorted(TRAIN_KEYS))}")
    data = values.get("data")
    data = {"source": data} if isinstance(data, str) else data
    if not isinstance(data, Mapping) or not isinstance(data.get("source"), str) or not data.get("source"):
        bad(("data",), "say where the data comes from, e.g. data: {source: digits}")
        data = {}
    data = dict(data)
    mode = values.get("mode")
    if mode is not None and mode not in MODES:
        bad(("mode",), f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        mode = None
    if mode is None:
        mode = ("gan" if {"generator", "discriminator"} <= set(networks or ()) else
                "language_model" if data.get("source") == "text" else "supervised")
    defaults = MODE_DEFAULTS[mode]
    epochs = _whole(values, "epochs", 10, 0, bad)
    seed = _whole(values, "seed", None, None, bad)
    if seed is None:
        seed = _whole(data, "seed", 0, None, lambda p, m, h=None: bad(("data",) + tuple(p), m, h))
    data_bad = lambda p, m, h=None: bad(("data",) + tuple(p), m, h)  # noqa: E731
    batch_size = _whole(data, "batch_size", defaults.batch_size, 1, data_bad)
    shuffle = _flag(data, "shuffle", True, data_bad)
    drop_last = _flag(data, "drop_last", False, data_bad)
    precision = values.get("precision", "fp32")
    if precision not in PRECISIONS:
        bad(("precision",), f"use fp32, bf16 or fp16, not {precision!r}")
        precision = "fp32"
    metrics = values.get("metrics", defaults.metrics)
    if not isinstance(metrics, (list, tuple)):
        bad(("metrics",), "give a list of metrics, e.g. [accuracy]")
        metrics = ()
    loss = values.get("loss", defaults.loss)
    if isinstance(loss, (list, tuple)):  # loss terms over named outputs and inputs (builder/training/loss_terms.py)
        loss = tuple(loss)
    elif not isinstance(loss, (str, Mapping)):
        bad(("loss",), f"give a loss name, {{type: name, ...}} or a list of terms, not {loss!r}")
        loss = defaults.loss
    config = TrainConfig(
        data=DataConfig(source=data.get("source", ""), batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                        options=data),
        mode=mode, loss=loss, metrics=tuple(metrics),
        optimizer=values.get("optimizer"), schedule=values.get("schedule"), init=values.get("init"),
        epochs=epochs, seed=seed, clip_grad=_clip_grad(values, bad), precision=precision,
        gan=_gan(values, bad), early_stopping=_early_stopping(values, bad),
        checkpoint_every_seconds=_checkpoint(values, bad), raw=_plain(values), where=where, file=file)
    return config, problems


def _whole(values, key, default, low, bad):
    value = values.get(key, default) if isinstance(values, Mapping) else default
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        bad((key,), f"must be a whole number{f' >= {low}' if low is not None else ''}, got {value!r}")
        return default if default is not None else 0
    return value


def _number(values, key, default, path, bad, low=None):
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (low is not None and value < low):
        bad(path + (key,), f"must be a number{f' >= {low}' if low is not None else ''}, got {value!r}")
        return default
    return float(value)


def _flag(values, key, default, bad):
    value = values.get(key, default)
    if not isinstance(value, bool):
        bad((key,), f"must be true or false, got {value!r}")
        return default
    return value


def _mapping(values, key, known, bad, hint):
    section = values.get(key)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        bad((key,), f"must be a mapping ({hint})")
        return {}
    for k in section:
        if k not in known:
            bad((key, k), f"unknown key {k!r}", did_you_mean(k, known) or f"known: {', '.join(known)}")
    return {k: v for k, v in section.items() if k in known}


def _gan(values, bad) -> GanConfig:
    gan = _mapping(values, "gan", GAN_KEYS, bad, "loss, k, n_critic, clip, gp_lambda")
    loss = gan.get("loss", "minimax")
    if loss not in GAN_LOSSES:
        bad(("gan", "loss"), f"unknown loss {loss!r}; known: {', '.join(GAN_LOSSES)}")
        loss = "minimax"
    k_default = 5 if loss.startswith("wgan") else 1
    k = gan.get("k", gan.get("n_critic", k_default))
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        bad(("gan", "k" if "k" in gan else "n_critic"), f"must be a whole number >= 1, got {k!r}")
        k = k_default
    return GanConfig(loss=loss, k=k, clip=_number(gan, "clip", 0.01, ("gan",), bad, 0),
                     gp_lambda=_number(gan, "gp_lambda", 10.0, ("gan",), bad, 0))


def _early_stopping(values, bad) -> EarlyStopping:
    stop = _mapping(values, "early_stopping", EARLY_STOPPING_KEYS, bad, "patience, monitor, min_delta, mode")
    where = lambda p, m, h=None: bad(("early_stopping",) + tuple(p), m, h)  # noqa: E731
    patience = _whole(stop, "patience", None, 0, where)
    monitor = stop.get("monitor", "val.loss")
    if not isinstance(monitor, str):
        where(("monitor",), f"must be a metric name such as val.loss, got {monitor!r}")
        monitor = "val.loss"
    last = monitor.split(".")[-1]
    higher_is_better = last in ("accuracy", "r2", "f1", "precision", "recall", "auc") or last.startswith("top")
    mode = stop.get("mode", "max" if higher_is_better else "min")
    if mode not in ("min", "max"):
        where(("mode",), f"use min or max, not {mode!r}")
        mode = "max" if higher_is_better else "min"
    return EarlyStopping(patience=patience, monitor=monitor,
                         min_delta=_number(stop, "min_delta", 0.0, ("early_stopping",), bad), maximize=mode == "max")


def _clip_grad(values, bad) -> ClipGrad:
    clip = _mapping(values, "clip_grad", ("norm", "value"), bad, "use {norm: N} and/or {value: V}")
    return ClipGrad(norm=_number(clip, "norm", None, ("clip_grad",), bad, 0) if "norm" in clip else None,
                    value=_number(clip, "value", None, ("clip_grad",), bad, 0) if "value" in clip else None)


def _checkpoint(values, bad) -> float:
    cp = _mapping(values, "checkpoint", ("every_seconds",), bad, "the only key is every_seconds (0 = every epoch)")
    return _number(cp, "every_seconds", 5.0, ("checkpoint",), bad, 0)


def per_network(cfg, names):
    """One optimizer/schedule config for both GAN networks, or {generator: ..., discriminator: ...}."""
    if isinstance(cfg, dict) and set(cfg) and set(cfg) <= set(names):
        return {n: cfg.get(n) for n in names}
    return {n: copy.deepcopy(cfg) for n in names}


# ----------------------------------------------------------------------------------------------------
# positions


def _positions(section, path) -> dict:
    """Key path -> (line, col) for every key of the loaded section (LocDict/LocList carry them)."""
    out = {}
    if isinstance(section, Mapping):
        locs = getattr(section, "locs", {}) or {}
        for key, value in section.items():
            if locs.get(key):
                out[path + (key,)] = tuple(locs[key])
            out.update(_positions(value, path + (key,)))
    return out


def _locate(where, path) -> tuple:
    """(line, col, node): a `--set` that gave this key (or a key around it) wins; else the position of
    the deepest written key on the path."""
    path = tuple(path)
    node = ".".join(map(str, ("train",) + path))
    for key, loc in where.items():
        if isinstance(loc, str) and (key[:len(path)] == path or path[:len(key)] == key):
            return None, None, f"{loc.split('=', 1)[0]}: {node}" if key != path else loc.split("=", 1)[0]
    for n in range(len(path), 0, -1):
        loc = where.get(path[:n])
        if isinstance(loc, tuple):
            return loc[0], loc[1], node
    return None, None, node


def _plain(value):
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
