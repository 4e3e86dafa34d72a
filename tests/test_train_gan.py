"""GAN mode on the notes' lower-triangular matrices: the generator's mean matrix must move at least 5x
closer to the real one, with the original minimax loss and with WGAN-GP; WGAN clips the critic."""
from __future__ import annotations

import json

import builder


def mean_distance_before_and_after(spec, tmp_path, **recipe):
    _, _, untrained = builder.train(spec, run_dir=tmp_path / "untrained", quiet=True, **{**recipe, "epochs": 0})
    nets, history, trained = builder.train(spec, run_dir=tmp_path / "trained", quiet=True, **recipe)
    before = json.loads((untrained / "test.json").read_text())["mean_distance"]
    after = json.loads((trained / "test.json").read_text())["mean_distance"]
    return before, after, nets, history


def test_minimax_gan_on_gan_tril_moves_the_mean_5x_closer(tmp_path):
    # the zoo spec with wider hidden layers, and the notes' k discriminator steps per generator step
    spec = builder.load("specs/gan_tril.yaml", g_hidden=64, d_hidden=64)
    before, after, nets, history = mean_distance_before_and_after(
        spec, tmp_path, gan={"loss": "minimax", "k": 5}, epochs=60,
        optimizer={"type": "adam", "lr": 1e-3, "betas": [0.5, 0.999]})
    assert after * 5 <= before, (before, after)
    assert set(nets) == {"generator", "discriminator"}
    assert {"train.d_loss", "train.g_loss", "val.mean_distance"} <= set(history[-1])


def test_wgan_gp_moves_the_mean_5x_closer(tmp_path):
    spec = builder.load("tests/data/wgan_tril.yaml")
    before, after, _, _ = mean_distance_before_and_after(spec, tmp_path)
    assert after * 5 <= before, (before, after)


def test_wgan_clips_the_critic_and_makes_progress(tmp_path):
    spec = builder.load("tests/data/wgan_tril.yaml")
    before, after, nets, _ = mean_distance_before_and_after(
        spec, tmp_path, gan={"loss": "wgan", "n_critic": 5, "clip": 0.01}, epochs=30,
        optimizer={"type": "rmsprop", "lr": 5e-4})
    assert all(p.abs().max() <= 0.01 for p in nets["discriminator"].parameters())
    assert after * 2 <= before, (before, after)
