"""Every chapter walkthrough in examples/ runs (few epochs here; the scripts default to the specs' own)."""
from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def chapter(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))

    def load(name):
        sys.modules.pop(name, None)
        return importlib.import_module(name)
    return load


def test_every_chapter_of_the_notes_has_a_walkthrough():
    names = sorted(p.stem for p in EXAMPLES.glob("0*.py"))
    assert names == ["01_linear_regression", "02_softmax_classification", "03_mlp", "04_cnn_lenet", "05_rnn",
                     "06_attention", "07_resnet", "08_gan"]


def test_regression_walkthrough_through_the_cli(chapter, tmp_path):
    out = chapter("01_linear_regression").main(cli=True, runs=str(tmp_path))
    assert all(abs(a - b) < 0.1 for a, b in zip(out["w"], [3.0, 4.0]))
    assert all(abs(a - b) < 0.1 for a, b in zip(out["w_star"], [3.0, 4.0]))


def test_classification_mlp_cnn_walkthroughs(chapter, tmp_path):
    assert chapter("02_softmax_classification").main(epochs=2, runs=str(tmp_path))["test"]["accuracy"] > 0.85
    assert chapter("03_mlp").main(epochs=2, runs=str(tmp_path))["test"]["accuracy"] > 0.9
    assert chapter("04_cnn_lenet").main(epochs=1, runs=str(tmp_path))["epochs"] == 1


def test_rnn_and_attention_walkthroughs(chapter, tmp_path):
    rnn = chapter("05_rnn").main(epochs=2, runs=str(tmp_path))
    assert rnn["sample"].startswith("The machine ") and len(rnn["sample"]) == len("The machine ") + 80
    attention = chapter("06_attention").main(epochs=2, runs=str(tmp_path))
    assert attention["lr"][1] > attention["lr"][0]  # still warming up
    assert math.isfinite(attention["test"]["perplexity"])


def test_resnet_and_gan_walkthroughs(chapter, tmp_path):
    small = {"source": "digits", "split": [0.3, 0.1, 0.1], "batch_size": 64, "seed": 0,
             "transform": {"resize": [32, 32], "normalize": True}}
    assert 0 <= chapter("07_resnet").main(epochs=1, runs=str(tmp_path), data=small)["test"]["accuracy"] <= 1
    gan = chapter("08_gan").main(epochs=2, runs=str(tmp_path))
    assert len(gan["history"]) == 2
