"""`train.loss` as a list of terms over the network's named outputs and inputs (autoencoders, VAEs):

    loss:
      - {type: bce, output: reconstruction, target: x}            # target: a spec input ...
      - {type: kl_normal, mu: mu, logvar: logvar, weight: 0.5}     # KL(N(mu, exp(logvar)) || N(0, 1))
      - {type: cross_entropy, output: logits}                      # ... or, when absent, the data's target

The total is the weighted sum of the terms. `kl_normal` is summed over the latent dims and averaged
over the batch (the VAE paper's per-example KL); the other terms are the `train.loss` functions of
losses.py with their options (`{type: huber, delta: 0.5, output: ...}`).
"""
from __future__ import annotations

import torch

from builder.core.choices import pick
from builder.core.errors import UserError
from builder.training.losses import LOSSES, make_loss
from builder.core.types import build_info

KL_KEYS = ("type", "mu", "logvar", "weight")


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per example (sum over the other dims), averaged over the batch."""
    per = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    return per.reshape(per.shape[0], -1).sum(1).mean() if per.dim() > 0 else per


def is_terms(cfg) -> bool:
    return isinstance(cfg, (list, tuple))


def describe_loss(cfg) -> str:
    """The loss's name for messages and pictures: `mse`, or `bce + kl_normal` for terms."""
    if is_terms(cfg):
        return " + ".join(str(t.get("type", "?")) if isinstance(t, dict) else "?" for t in cfg)
    return cfg.get("type", "loss") if isinstance(cfg, dict) else str(cfg)


class LossTerms:
    """Callable (outputs tuple, inputs list, target) -> the weighted sum of the terms."""

    def __init__(self, cfg, outputs: list[str] | None = None, inputs: list[str] | None = None):
        if not cfg:
            raise UserError("train.loss: an empty list of terms; give at least one {type, output, ...}")
        self.terms = [self._parse(i, raw, outputs, inputs) for i, raw in enumerate(cfg)]

    @staticmethod
    def _parse(i, raw, outputs, inputs):
        where = f"train.loss[{i}]"
        if not isinstance(raw, dict) or "type" not in raw:
            raise UserError(f"{where}: each term is a mapping with `type` (e.g. {{type: mse, output: recon, "
                            f"target: x}}), got {raw!r}")
        raw = dict(raw)
        kind = raw.pop("type")
        weight = raw.pop("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise UserError(f"{where}: weight must be a number, got {weight!r}")
        pick({**LOSSES, "kl_normal": kl_normal}, kind, "train.loss", "loss")  # unknown: did-you-mean
        if kind == "kl_normal":
            unknown = set(raw) - set(KL_KEYS)
            if unknown or "mu" not in raw or "logvar" not in raw:
                raise UserError(f"{where}: kl_normal takes mu, logvar (output names) and weight"
                                + (f"; unknown: {sorted(unknown)}" if unknown else ""))
            refs = {"mu": _output(raw["mu"], outputs, where), "logvar": _output(raw["logvar"], outputs, where)}
            return kind, float(weight), refs, None
        if "output" not in raw:
            raise UserError(f"{where}: {kind} needs `output:` (one of the network's outputs)")
        refs = {"output": _output(raw.pop("output"), outputs, where)}
        target = raw.pop("target", None)
        if target is not None:
            if inputs is not None and target not in inputs:
                raise UserError(f"{where}: target '{target}' is not an input of the network (inputs: "
                                f"{', '.join(inputs)}); leave it out to use the data's target")
            refs["target"] = inputs.index(target) if inputs is not None else target
        return kind, float(weight), refs, make_loss({"type": kind, **raw})

    def __call__(self, outputs, inputs, target):
        outs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        total = 0.0
        for kind, weight, refs, fn in self.terms:
            if kind == "kl_normal":
                value = kl_normal(outs[refs["mu"]].float(), outs[refs["logvar"]].float())
            else:
                truth = inputs[refs["target"]] if "target" in refs else target
                value = fn(outs[refs["output"]], truth)
            total = total + weight * value
        return total


def _output(name, outputs, where):
    if outputs is None:
        return name
    if name not in outputs:
        raise UserError(f"{where}: '{name}' is not an output of the network (outputs: {', '.join(outputs)}); "
                        "name it under `outputs:`")
    return outputs.index(name)


def check_terms(cfg) -> None:
    """The terms' own options, before a network is known (names are checked when training starts)."""
    LossTerms(cfg)


def objective(loss_cfg, module, targets=None):
    """(outputs, inputs, target) -> loss for `module`: a list of terms over its named outputs and inputs,
    or one `train.loss` function of its first output against the data's target."""
    if is_terms(loss_cfg):
        info = build_info(module)
        return LossTerms(loss_cfg, list(info.outputs) if info else [], [t.name for t in info.inputs] if info else [])
    fn = make_loss(loss_cfg, targets)  # targets(): the training targets (cross_entropy's balanced weights)

    def single(outputs, inputs, target):
        return fn(outputs[0] if isinstance(outputs, (tuple, list)) else outputs, target)
    return single
