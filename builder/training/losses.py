"""`train.loss`: a name (or {type: name, ...options}) -> loss(prediction, target) -> scalar tensor.

Targets are brought to the prediction's layout here, once, so specs need not care whether a regression
target is [B] or [B, 1], or whether a language model's logits are [B, T, V].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from builder.core.choices import pick
from builder.core.errors import UserError


def _class_logits(pred, target):
    """Cross-entropy wants classes in dim 1: [B, T, V] logits with [B, T] targets become [B*T, V]."""
    if pred.dim() == target.dim() + 1 and pred.dim() > 2:
        return pred.reshape(-1, pred.shape[-1]), target.reshape(-1)
    return pred, target


def _same_shape(pred, target):
    return pred, target.reshape(pred.shape).to(pred.dtype)


def cross_entropy(label_smoothing=0.0, ignore_index=-100, weight=None, _targets=None):
    """`weight`: one weight per class, or `balanced` (n / (classes * count of the class) over the training
    targets (`_targets()`, given by the trainer), as scikit-learn's class_weight='balanced')."""
    weights = _class_weights(weight, _targets)

    def loss(pred, target):
        w = None if weights is None else weights.to(pred.device, pred.dtype)
        return F.cross_entropy(*_class_logits(pred, target), weight=w, label_smoothing=label_smoothing,
                               ignore_index=ignore_index)
    return loss


def _class_weights(weight, targets):
    if weight is None:
        return None
    if weight == "balanced":
        if targets is None:
            return None  # `build check`: the data gives the counts at training time
        counts = torch.bincount(torch.as_tensor(targets()).reshape(-1).long().clamp_min(0)).double()
        return (counts.sum() / (len(counts) * counts.clamp_min(1))).float()
    if isinstance(weight, (list, tuple)) and weight and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weight):
        return torch.tensor([float(w) for w in weight])
    raise UserError(f"train.loss: cross_entropy weight must be 'balanced' or a list of numbers >= 0, not {weight!r}")


def nll(ignore_index=-100):
    return lambda pred, target: F.nll_loss(*_class_logits(pred, target), ignore_index=ignore_index)


def mse():
    return lambda pred, target: F.mse_loss(*_same_shape(pred, target))


def l1():
    return lambda pred, target: F.l1_loss(*_same_shape(pred, target))


def huber(delta=1.0):
    return lambda pred, target: F.huber_loss(*_same_shape(pred, target), delta=delta)


def bce():
    return lambda pred, target: F.binary_cross_entropy(*_same_shape(pred, target))


def bce_with_logits(pos_weight=None):
    pw = None if pos_weight is None else torch.tensor(pos_weight)
    return lambda pred, target: F.binary_cross_entropy_with_logits(*_same_shape(pred, target), pos_weight=pw)


LOSSES = {
    "cross_entropy": cross_entropy, "token_cross_entropy": cross_entropy, "nll": nll, "mse": mse,
    "l1": l1, "huber": huber, "bce": bce, "bce_with_logits": bce_with_logits,
}


def make_loss(cfg, targets=None):
    """`mse`, or `{type: cross_entropy, label_smoothing: 0.1, weight: balanced}`; `targets()` (the training
    split's) gives the class counts of `weight: balanced`."""
    cfg = {"type": cfg} if isinstance(cfg, str) else dict(cfg or {})
    name = cfg.pop("type", None)
    make = pick(LOSSES, name, "train.loss", "loss")
    if make is cross_entropy and cfg.get("weight") == "balanced":
        cfg["_targets"] = targets
    try:
        return make(**cfg)
    except TypeError:
        raise UserError(f"train.loss: {name} takes no option(s) {sorted(cfg)}") from None
