"""Losses bring targets to the prediction's layout; metrics are exact sums over a split, however batched."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from builder.core.errors import UserError
from builder.training.losses import make_loss
from builder.training.metrics import make_metric


def test_losses_match_torch_and_accept_either_target_layout():
    pred, target = torch.randn(8, 1), torch.randn(8)
    assert make_loss("mse")(pred, target) == F.mse_loss(pred[:, 0], target)
    assert make_loss("l1")(pred, target) == F.l1_loss(pred[:, 0], target)
    assert make_loss({"type": "huber", "delta": 0.5})(pred, target) == F.huber_loss(pred[:, 0], target, delta=0.5)
    p = torch.sigmoid(pred)
    labels = (target > 0).float()
    assert torch.allclose(make_loss("bce")(p, labels), F.binary_cross_entropy(p[:, 0], labels))
    assert torch.allclose(make_loss("bce_with_logits")(pred, labels), F.binary_cross_entropy_with_logits(pred[:, 0], labels))
    logits, classes = torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert make_loss({"type": "cross_entropy", "label_smoothing": 0.1})(logits, classes) == \
        F.cross_entropy(logits, classes, label_smoothing=0.1)
    assert make_loss("nll")(logits.log_softmax(-1), classes) == F.nll_loss(logits.log_softmax(-1), classes)


def test_per_token_cross_entropy_for_language_models():
    logits, tokens = torch.randn(2, 7, 11), torch.randint(0, 11, (2, 7))
    want = F.cross_entropy(logits.reshape(14, 11), tokens.reshape(14))
    assert torch.allclose(make_loss("token_cross_entropy")(logits, tokens), want)
    assert torch.allclose(make_loss("cross_entropy")(logits, tokens), want)


def run(metric_cfg, pred, target, batch=3):
    name, metric = make_metric(metric_cfg)
    for i in range(0, len(pred), batch):
        metric.update(pred[i:i + batch], target[i:i + batch])
    return name, metric.value()


def test_metrics_are_exact_over_batches():
    torch.manual_seed(0)
    logits, classes = torch.randn(20, 6), torch.randint(0, 6, (20,))
    assert run("accuracy", logits, classes)[1] == pytest.approx((logits.argmax(1) == classes).float().mean().item())
    top3 = (logits.topk(3, 1).indices == classes[:, None]).any(1).float().mean().item()
    assert run("top3", logits, classes) == ("top3", pytest.approx(top3))
    assert run({"type": "top_k", "k": 3}, logits, classes) == ("top3", pytest.approx(top3))
    pred, y = torch.randn(20, 1), torch.randn(20, 1)
    assert run("mse", pred, y)[1] == pytest.approx(F.mse_loss(pred, y).item(), rel=1e-6)
    assert run("mae", pred, y)[1] == pytest.approx(F.l1_loss(pred, y).item(), rel=1e-6)
    r2 = 1 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert run("r2", pred, y)[1] == pytest.approx(r2.item(), rel=1e-5)
    logits, tokens = torch.randn(4, 5, 9), torch.randint(0, 9, (4, 5))
    ppl = math.exp(F.cross_entropy(logits.reshape(-1, 9), tokens.reshape(-1)).item())
    assert run("perplexity", logits, tokens)[1] == pytest.approx(ppl, rel=1e-5)
    uniform = torch.zeros(4, 5, 9)
    assert run("perplexity", uniform, tokens)[1] == pytest.approx(9.0)  # a uniform guess: the vocabulary size


def test_binary_accuracy_from_one_logit():
    logits, labels = torch.tensor([[2.0], [-1.0], [0.5]]), torch.tensor([[1.0], [0.0], [0.0]])
    assert run("accuracy", logits, labels)[1] == pytest.approx(2 / 3)


def test_unknown_names_are_one_line_errors():
    with pytest.raises(UserError, match="did you mean 'huber'"):
        make_loss("hubber")
    with pytest.raises(UserError, match="did you mean 'accuracy'"):
        make_metric("acuracy")
    with pytest.raises(UserError, match="takes no option"):
        make_loss({"type": "mse", "delta": 1})
