"""The three own-data examples (issue 23) run whole on the data they generate: an image-folder classifier,
a text classifier and a forecaster, each trained, exported, predicted and evaluated."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
import forecaster  # noqa: E402
import image_folder  # noqa: E402
import text_classifier  # noqa: E402

sys.path.remove(str(EXAMPLES))


def test_image_folder_example(tmp_path):
    out = image_folder.main(runs=str(tmp_path), per_class=16)
    assert out["accuracy"] >= 0.9 and out["predicted"] == list(image_folder.CLASSES)


def test_text_classifier_example(tmp_path):
    out = text_classifier.main(runs=str(tmp_path), rows=160)
    assert out["predicted"] == ["positive", "negative", "positive", "negative"]
    assert out["test"]["accuracy"] >= 0.95


def test_forecaster_example(tmp_path):
    out = forecaster.main(runs=str(tmp_path), hours=24 * 12)
    assert out["metrics"]["mae"] < 1.0 and out["metrics"]["rows"] == 24 * 3 - 24
    assert 8 < out["forecasts"][-1] < 22 and np.isfinite(out["forecasts"]).all()  # degrees, not z-scores
