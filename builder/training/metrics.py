"""`train.metrics`: running sums over a whole split, so a metric is exact however the split is batched.

Each metric adds tensors of sums per batch (`update`) and turns them into one number at the end
(`value`). With several processes the sums are all-reduced before `value`, which is why they are tensors.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from builder.core.choices import pick
from builder.core.errors import UserError
from builder.training.losses import _class_logits


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


def _predicted_classes(pred, target):
    """(predicted class ids, true ids, number of classes) of class logits: (N, C), or (N, 1) for two
    classes by a single logit (positive above 0)."""
    pred, target = _class_logits(pred.detach().float(), target)
    target = target.reshape(-1).long()
    if pred.dim() == 1 or pred.shape[-1] == 1:
        return (pred.reshape(-1) > 0).long(), target, 2
    return pred.argmax(-1), target, pred.shape[-1]


class _Confusion(Metric):
    """Macro-averaged precision, recall or F1 from the running confusion matrix (its C*C counts are the
    sums; sized by the first batch's number of classes)."""
    n_sums = 1

    def update(self, pred, target):
        guess, truth, classes = _predicted_classes(pred, target)
        counts = torch.bincount(truth * classes + guess, minlength=classes * classes).double()
        if self.sums.numel() == 1:
            self.sums = torch.zeros(classes * classes + 1, dtype=torch.float64)
        self.sums[:-1] += counts
        self.sums[-1] += len(truth)

    def finish(self, *sums):
        c = int(round(math.sqrt(len(sums) - 1)))
        m = torch.tensor(sums[:-1], dtype=torch.float64).reshape(c, c)  # rows: truth, columns: prediction
        hit = m.diag()
        precision = torch.where(m.sum(0) > 0, hit / m.sum(0).clamp_min(1), torch.zeros_like(hit))
        recall = torch.where(m.sum(1) > 0, hit / m.sum(1).clamp_min(1), torch.zeros_like(hit))
        f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-300),
                         torch.zeros_like(hit))
        present = (m.sum(0) + m.sum(1)) > 0  # as scikit-learn's macro average over the labels seen
        return self.pick(precision, recall, f1)[present].mean().item()


class Precision(_Confusion):
    @staticmethod
    def pick(precision, recall, f1):
        return precision


class Recall(_Confusion):
    @staticmethod
    def pick(precision, recall, f1):
        return recall


class F1(_Confusion):
    @staticmethod
    def pick(precision, recall, f1):
        return f1


class AUC(Metric):
    """ROC AUC of a two-class classifier from running histograms of its positive-class score (BINS bins
    per class; scores falling in one bin count as ties, so the value is within a bin's width of exact)."""
    BINS = 1000
    n_sums = 2 * BINS + 1

    def batch_sums(self, pred, target):
        pred, target = _class_logits(pred.detach().float(), target)
        target = target.reshape(-1).long()
        if pred.dim() == 2 and pred.shape[-1] == 2:
            score = pred.softmax(-1)[:, 1]
        elif pred.dim() == 1 or pred.shape[-1] == 1:
            score = pred.reshape(-1).sigmoid()
        else:
            raise UserError(f"train.metrics: auc is for two classes, the network gives {pred.shape[-1]} scores")
        bins = (score * self.BINS).long().clamp(0, self.BINS - 1)
        pos = torch.bincount(bins[target == 1], minlength=self.BINS)
        neg = torch.bincount(bins[target != 1], minlength=self.BINS)
        return (*pos.double(), *neg.double(), len(target))

    def finish(self, *sums):
        pos = torch.tensor(sums[:self.BINS], dtype=torch.float64)
        neg = torch.tensor(sums[self.BINS:2 * self.BINS], dtype=torch.float64)
        if pos.sum() == 0 or neg.sum() == 0:
            return float("nan")
        below = torch.cumsum(neg, 0) - neg  # negatives scored in lower bins
        return ((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum())).item()


class Perplexity(Metric):
    """exp(mean negative log-likelihood per token): 1 is perfect, the vocabulary size is a uniform guess."""

    def batch_sums(self, pred, target):
        logits, target = _class_logits(pred.detach().float(), target)
        return F.cross_entropy(logits, target, reduction="sum"), target.numel()

    def finish(self, nll, count):
        return math.exp(min(nll / count, 700.0))


METRICS = {"accuracy": Accuracy, "top_k": Accuracy, "mse": MSE, "mae": MAE, "r2": R2, "perplexity": Perplexity,
           "precision": Precision, "recall": Recall, "f1": F1, "auc": AUC}


def make_metric(cfg):
    """`accuracy`, `top5` (top-5 accuracy), or `{type: top_k, k: 3}`; returns (name, metric)."""
    if not isinstance(cfg, (str, dict)):
        raise UserError(f"train.metrics: a metric is a name or {{type: NAME, ...}}, got {cfg!r}")
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
