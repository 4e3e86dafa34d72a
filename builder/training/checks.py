"""`build check`'s second look at `train:`: names and options of the data source, loss, metrics, optimizer,
schedule and initializers, checked by the modules that use them (no data is read, nothing trains).

Each key is checked on its own, so every mistake is reported, at the key's position."""
from __future__ import annotations

import re
import types

from builder.data import check_data
from builder.core.errors import Diagnostic, UserError
from builder.ops.initializers import check_init
from builder.training.loss_terms import check_terms, is_terms
from builder.training.losses import make_loss
from builder.training.metrics import make_metric
from builder.training.optim import Schedule, make_optimizer
from builder.spec.train_section import TrainConfig, per_network


def option_errors(cfg: TrainConfig, skip=()) -> list:
    """One Diagnostic per key whose names or options are wrong (in the section's order); keys in `skip`
    (already reported) are not checked."""
    names = ("generator", "discriminator") if cfg.mode == "gan" else ("model",)
    optimizers = per_network(cfg.optimizer, names) if cfg.mode == "gan" else {"model": cfg.optimizer}
    schedules = per_network(cfg.schedule, names) if cfg.mode == "gan" else {"model": cfg.schedule}

    def optimizer():
        for name in names:
            make_optimizer(None, optimizers[name])  # the options only: parameter groups match spec paths later

    def schedule():
        for name in names:
            Schedule(types.SimpleNamespace(param_groups=[{"lr": 1.0}]), schedules[name], 1, cfg.epochs)

    checks = {
        "data": lambda: check_data(dict(cfg.data.options)),
        "loss": lambda: check_terms(cfg.loss) if is_terms(cfg.loss) else make_loss(cfg.loss),
        "metrics": lambda: [make_metric(m) for m in cfg.metrics],
        "optimizer": optimizer,
        "schedule": schedule,
        "init": lambda: check_init(cfg.init),
    }
    out = []
    for key, check in checks.items():
        if key in skip:
            continue
        try:
            check()
        except (UserError, TypeError, ValueError) as e:
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            line, col, node = cfg.locate(*_key_path(key, message))
            if message.startswith("train.") and ": " in message:  # "train.data.source: unknown source ..."
                named, message = message.split(": ", 1)
                node = node if node.startswith("--set") else named
            out.append(Diagnostic(message, cfg.file, line, col, node))
    return out


_NAMED = re.compile(r"^train\.([A-Za-z_][\w.]*)(?:\s*\(|:)")
_NO_KEY = re.compile(r"takes no key '([^']+)'")


def _key_path(key, message) -> tuple:
    """The written key an error is about, as deep as the message names it ("train.data.window.lookback: ...",
    "source 'images' takes no key 'sizee'"), so the line points at that key."""
    unknown = _NO_KEY.search(message)
    if unknown and key == "data":
        return ("data", unknown.group(1))
    named = _NAMED.match(message)
    if named and named.group(1).split(".")[0] == key:
        return tuple(p for p in named.group(1).split(".") if p)
    return (key,)
