"""`train.metrics`: running sums over a whole split, so a metric is exact however the split is batched.

Each metric adds tensors of sums per batch (`update`) and turns them into one number at the end
(`value`). With several processes the sums are all-reduced before `value`, which is why they are tensors.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .choices import pick
from .errors import UserError
from .losses import _class_logits


class Metric:
    n_sums = 2  # how many running sums `batch_sums` returns (the last is always the count)

    def __init__(self):
        self.sums = torch.zeros(self.n_sums, dtype=torch.float64)

    def update(self, pred, target):
        self.sums += torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in self.batch_sums(pred, target)])

    def value(self) -> float:
        sums = self.sums.tolist()
        return self.finish(*sums) if sums[-1] > 0 else float("nan")


class Accuracy(Metric):
    def __init__(self, k=1):
        super().__init__()
        self.k = k

    def batch_sums(self, pred, target):
        pred, target = _class_logits(pred.detach(), target)
        if pred.dim() == 1 or pred.shape[-1] == 1:  # one logit: binary, threshold at 0
            hit = (pred.reshape(-1) > 0).long() == target.reshape(-1).long()
        else:
            hit = (pred.topk(self.k, dim=-1).indices == target.reshape(-1, 1)).any(-1)
        return hit.sum(), hit.numel()

    def finish(self, correct, count):
        return correct / count


class _Regression(Metric):
    n_sums = 5

    def batch_sums(self, pred, target):
        pred = pred.detach().double()
        target = target.reshape(pred.shape).double()
        err = pred - target
        return ((err * err).sum(), err.abs().sum(), target.sum(), (target * target).sum(), err.numel())


class MSE(_Regression):
    def finish(self, sse, sae, sy, syy, n):
        return sse / n


class MAE(_Regression):
    def finish(self, sse, sae, sy, syy, n):
        return sae / n


class R2(_Regression):
    def finish(self, sse, sae, sy, syy, n):
        total = syy - sy * sy / n
        return 1 - sse / total if total > 0 else float("nan")


class Perplexity(Metric):
    """exp(mean negative log-likelihood per token): 1 is perfect, the vocabulary size is a uniform guess."""

    def batch_sums(self, pred, target):
        logits, target = _class_logits(pred.detach().float(), target)
        return F.cross_entropy(logits, target, reduction="sum"), target.numel()

    def finish(self, nll, count):
        return math.exp(min(nll / count, 700.0))


METRICS = {"accuracy": Accuracy, "top_k": Accuracy, "mse": MSE, "mae": MAE, "r2": R2, "perplexity": Perplexity}


def make_metric(cfg):
    """`accuracy`, `top5` (top-5 accuracy), or `{type: top_k, k: 3}`; returns (name, metric)."""
    cfg = {"type": cfg} if isinstance(cfg, str) else dict(cfg)
    name = cfg.pop("type", None)
    if isinstance(name, str) and name.startswith("top") and name[3:].isdigit():
        return name, Accuracy(k=int(name[3:]))
    make = pick(METRICS, name, "train.metrics", "metric (or topK)")
    label = f"top{cfg['k']}" if name == "top_k" else name
    try:
        return label, make(**cfg)
    except TypeError:
        raise UserError(f"train.metrics: {name} takes no option(s) {sorted(cfg)}") from None
