"""ConvNeXt, EfficientNet and Swin (small variants, one input channel) train for real: `build train`'s
loop on scikit-learn's digits resized to 32x32, two short epochs (9 steps each) with stochastic depth
active; the training loss falls."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import builder

SPECS = Path(__file__).resolve().parents[1] / "specs"

TRAIN = """
train:
  data: {source: digits, split: [0.3, 0.1, 0.6], batch_size: 64, shuffle: true, seed: 0,
         transform: {resize: [32, 32], normalize: true}}
  loss: cross_entropy
  optimizer: {type: adamw, lr: 0.003}
  epochs: 2
  seed: 0
  metrics: [accuracy]
"""

SMALL = {
    "convnext_tiny": {"c1": 8, "c2": 16, "c3": 16, "c4": 32, "d1": 1, "d2": 1, "d3": 2, "d4": 1,
                      "stochastic_depth_prob": 0.3},
    "efficientnet_b0": {"width_mult": 0.25, "depth_mult": 0.1, "stochastic_depth_prob": 0.3},
    "swin_t": {"image_size": 32, "patch_size": 2, "window": 2, "embed_dim": 8, "h1": 1, "h2": 2, "h3": 2, "h4": 4,
               "d2": 1, "d3": 1, "d4": 1, "mlp_ratio": 2, "stochastic_depth_prob": 0.3},
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_modern_vision_spec_trains_on_digits(tmp_path, name):
    size = {} if name == "swin_t" else {"size": 32}        # Swin's image size is its `image_size`
    spec = builder.load((SPECS / f"{name}.yaml").read_text() + TRAIN, in_channels=1, num_classes=10, **size,
                        **SMALL[name])
    module, history, run_dir = builder.train(spec, run_dir=tmp_path, quiet=True)
    losses = [row["train.loss"] for row in history]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0], losses
    if name != "efficientnet_b0":   # LayerNorm nets: already well above chance (0.1) on held-out digits
        assert history[-1]["val.accuracy"] > 0.5, history
    # EfficientNet's eval-mode batch norm still runs on statistics of ~18 steps (momentum 0.1): its held-out
    # accuracy is not yet meaningful, its falling training loss is
