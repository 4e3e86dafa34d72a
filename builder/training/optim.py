"""`train.optimizer` and `train.schedule`: torch optimizers with parameter groups chosen by spec path,
and learning-rate schedules as one small, resumable multiplier of each group's base rate.

    optimizer: {type: sgd, lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 1.0e-4,
                groups: [{params: ["*.bias", "*norm*"], weight_decay: 0}, {params: "stem.*", lr: 0.01}]}
    schedule:  {type: cosine, warmup_steps: 100}

A group's `params` are glob patterns matched against parameter names (`stage1.0.conv1.weight`) and their
module paths (`stage1.0.conv1`); a parameter joins the first group that matches it, else the default one.
"""
from __future__ import annotations

import inspect
import math

import torch

from builder.core.choices import pick
from builder.core.errors import UserError, did_you_mean
from builder.ops.initializers import matches as _matches

OPTIMIZERS = {
    "sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop,
}


def param_groups(model, groups):
    """Split the trainable parameters into the configured groups (first match wins) plus the rest."""
    chosen = [[] for _ in groups]
    rest = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        for i, g in enumerate(groups):
            if _matches(name, g["params"]):
                chosen[i].append(p)
                break
        else:
            rest.append(p)
    out = [{"params": rest}] if rest else []
    for g, params in zip(groups, chosen):
        if params:
            out.append({**{k: v for k, v in g.items() if k != "params"}, "params": params})
    return out


def make_optimizer(model, cfg):
    """A torch optimizer over `model`'s trainable parameters, configured by one `optimizer:` dict.
    With model None only the options are checked (by torch's own constructor) and None is returned:
    building a real optimizer imports torch._dynamo, a second of start-up `build check` need not pay."""
    cfg = dict(cfg or {"type": "sgd", "lr": 0.01})
    cls = pick(OPTIMIZERS, cfg.pop("type", "sgd"), "train.optimizer", "type")
    groups = cfg.pop("groups", []) or []
    known = set(inspect.signature(cls).parameters) - {"params"}
    for key in list(cfg) + [k for g in groups for k in g if k != "params"]:
        if key not in known:
            hint = did_you_mean(key, known)
            raise UserError(f"train.optimizer: {cls.__name__} has no option {key!r}"
                            + (f" ({hint})" if hint else f"; options: {', '.join(sorted(known))}"))
    for g in groups:
        if "params" not in g:
            raise UserError("train.optimizer.groups: each group needs 'params' (glob patterns of spec paths)")
    if "betas" in cfg:
        cfg["betas"] = tuple(cfg["betas"])
    try:
        if model is None:
            try:
                cls([], **cfg)  # torch checks the values first, then refuses the empty parameter list
            except ValueError as e:
                if "empty parameter list" not in str(e):
                    raise
            return None
        return cls(param_groups(model, groups), **cfg)
    except (ValueError, TypeError) as e:
        raise UserError(f"train.optimizer: {e}") from None


SCHEDULES = ("constant", "step", "multistep", "exponential", "cosine", "warmup", "noam", "reduce_on_plateau")


class Schedule:
    """lr of group i = base lr of group i * factor(step, epoch). Stepped after every optimizer step and
    at the end of every epoch; its whole state is three numbers, saved with the checkpoint."""

    def __init__(self, optimizer, cfg, steps_per_epoch, epochs):
        cfg = {"type": cfg} if isinstance(cfg, str) else dict(cfg or {})
        self.type = cfg.pop("type", "constant")
        pick(dict.fromkeys(SCHEDULES), self.type, "train.schedule", "type")
        self.warmup = int(cfg.pop("warmup_steps", 0))
        self.total_steps = int(cfg.pop("total_steps", steps_per_epoch * epochs))
        self.opts = cfg
        allowed = {
            "constant": set(), "warmup": set(), "step": {"step_size", "gamma"},
            "multistep": {"milestones", "gamma"}, "exponential": {"gamma"}, "cosine": {"min_lr"},
            "noam": {"d_model"},
            "reduce_on_plateau": {"monitor", "mode", "factor", "patience", "threshold", "min_lr"},
        }[self.type]
        unknown = set(cfg) - allowed
        if unknown:
            raise UserError(f"train.schedule: {self.type} has no option(s) {sorted(unknown)}"
                            + f"; options: {', '.join(sorted(allowed | {'warmup_steps', 'total_steps'}))}")
        if self.type == "noam" and "d_model" not in cfg:
            raise UserError("train.schedule: noam needs d_model (lr = d_model^-0.5 * min(s^-0.5, s*warmup^-1.5))")
        self.optimizer = optimizer
        self.base = [g.setdefault("initial_lr", g["lr"]) for g in optimizer.param_groups]
        self.steps = 0
        self.epochs = 0
        self.plateau = {"scale": 1.0, "best": None, "bad": 0}
        self._apply()

    @property
    def monitor(self):
        return self.opts.get("monitor", "val.loss") if self.type == "reduce_on_plateau" else None

    def factor(self) -> float:
        s, e, o = self.steps, self.epochs, self.opts
        if self.type == "noam":  # "Attention is all you need", with s counted from 1
            s1 = s + 1
            return o["d_model"] ** -0.5 * min(s1 ** -0.5, s1 * max(self.warmup, 1) ** -1.5)
        f = 1.0
        if self.type == "step":
            f = o.get("gamma", 0.1) ** (e // o["step_size"])
        elif self.type == "multistep":
            f = o.get("gamma", 0.1) ** sum(e >= m for m in o["milestones"])
        elif self.type == "exponential":
            f = o["gamma"] ** e
        elif self.type == "cosine":
            progress = min(max(s - self.warmup, 0) / max(self.total_steps - self.warmup, 1), 1.0)
            floor = o.get("min_lr", 0.0) / self.base[0] if self.base[0] else 0.0
            f = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        elif self.type == "reduce_on_plateau":
            f = self.plateau["scale"]
        if self.warmup and s < self.warmup:
            f *= (s + 1) / self.warmup
        return f

    def _apply(self):
        f = self.factor()
        for group, base in zip(self.optimizer.param_groups, self.base):
            group["lr"] = base * f
            if self.type == "reduce_on_plateau" and "min_lr" in self.opts:
                group["lr"] = max(group["lr"], self.opts["min_lr"])

    def step(self):
        self.steps += 1
        self._apply()

    def epoch_end(self, metrics: dict):
        self.epochs += 1
        if self.type == "reduce_on_plateau":
            self._plateau(metrics)
        self._apply()

    def _plateau(self, metrics):
        value = metrics.get(self.monitor)
        if value is None or value != value:
            return
        p, mode = self.plateau, self.opts.get("mode", "min")
        threshold = self.opts.get("threshold", 1e-4)
        better = p["best"] is None or (value < p["best"] * (1 - threshold) if mode == "min"
                                       else value > p["best"] * (1 + threshold))
        if better:
            p["best"], p["bad"] = value, 0
        else:
            p["bad"] += 1
            if p["bad"] > self.opts.get("patience", 10):
                p["scale"] *= self.opts.get("factor", 0.1)
                p["bad"] = 0

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self):
        return {"steps": self.steps, "epochs": self.epochs, "plateau": dict(self.plateau)}

    def load_state_dict(self, state):
        self.steps, self.epochs, self.plateau = state["steps"], state["epochs"], dict(state["plateau"])
        self._apply()
