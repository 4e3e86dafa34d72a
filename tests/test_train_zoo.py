"""The proofs of `build train` on real data: each zoo spec trains to the number the issue asks for."""
from __future__ import annotations

import json

import pytest
import torch

import builder
from builder.data import load_data


def test_linear_regression_recovers_w_3_4(tmp_path):
    module, history, run_dir = builder.train("specs/linear_regression.yaml", run_dir=tmp_path, quiet=True)
    w = module.get_submodule("linear").weight.detach().reshape(-1)
    assert torch.allclose(w, torch.tensor([3.0, 4.0]), atol=0.1), w
    assert history[-1]["val.r2"] > 0.9


def test_mlp_digits_reaches_97_percent_test_accuracy(tmp_path):
    module, history, run_dir = builder.train("specs/mlp_digits.yaml", run_dir=tmp_path, quiet=True)
    test = json.loads((run_dir / "test.json").read_text())
    assert test["accuracy"] >= 0.97, test
    # the returned module really is that good on the held-out digits (recomputed here, not read back)
    spec = builder.load("specs/mlp_digits.yaml")
    data = load_data(spec.train["data"])
    x, y = data.test.fields
    assert not module.training  # handed back in eval mode (the spec has dropout)
    with torch.no_grad():
        accuracy = (module(x.reshape(len(x), -1)).argmax(1) == y).float().mean().item()
    assert accuracy == pytest.approx(test["accuracy"])


def test_lenet5_on_digits_at_28x28_above_95_percent(tmp_path):
    module, history, run_dir = builder.train("specs/lenet5.yaml", run_dir=tmp_path, quiet=True)
    assert json.loads((run_dir / "test.json").read_text())["accuracy"] > 0.95


def test_xor_mlp_learns_xor(tmp_path):
    module, history, run_dir = builder.train("specs/xor_mlp.yaml", run_dir=tmp_path, quiet=True)
    corners = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    with torch.no_grad():
        assert module(corners).argmax(1).tolist() == [0, 1, 1, 0]


def test_char_lstm_ends_below_the_unigram_perplexity(tmp_path):
    module, history, run_dir = builder.train("specs/char_lstm.yaml", run_dir=tmp_path, quiet=True)
    spec = builder.load("specs/char_lstm.yaml")
    unigram = load_data(spec.train["data"]).info["unigram_perplexity"]
    test = json.loads((run_dir / "test.json").read_text())
    assert history[0]["val.perplexity"] > test["perplexity"]
    assert test["perplexity"] < 0.8 * unigram, (test, unigram)


def test_rnn_sine_predicts_one_step_ahead(tmp_path):
    module, history, run_dir = builder.train("specs/rnn_sine.yaml", run_dir=tmp_path, quiet=True)
    test = json.loads((run_dir / "test.json").read_text())
    # the signal has variance ~0.5 and noise variance 0.04: a good one-step predictor is near the noise
    assert test["mse"] < 0.1, test
