"""The run folder, reproducibility, resume, NaN stops, early stopping and the `build train` command."""
from __future__ import annotations

import csv
import json
import re

import pytest
import torch

import builder
from builder.training import checkpoint
from builder.commands.cli import main
from builder.core.errors import UserError
from builder.training.book import TrainingDiverged


def rows_without_seconds(run_dir):
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(float(r["seconds"]) >= 0 for r in rows)
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_run_folder_holds_spec_metrics_checkpoints_curves_and_test_metrics(tmp_path):
    _, history, run_dir = builder.train("specs/xor_mlp.yaml", run_dir=tmp_path / "xor", quiet=True, epochs=3)
    names = {p.name for p in run_dir.iterdir()}
    assert {"spec.yaml", "resolved.yaml", "metrics.csv", "last.pt", "best.pt", "curves.png", "test.json"} <= names
    assert (run_dir / "spec.yaml").read_text() == open("specs/xor_mlp.yaml").read()
    assert list(csv.DictReader(open(run_dir / "metrics.csv")))[0].keys() == \
        {"epoch", "train.loss", "val.loss", "val.accuracy", "lr", "seconds"}
    state = checkpoint.load(run_dir / "last.pt")
    assert state["epoch"] == 3 and set(state) >= {"networks", "optimizers", "schedules", "rng", "history"}
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert set(json.loads((run_dir / "test.json").read_text())) == {"loss", "accuracy"}


def test_same_seed_gives_the_same_metrics_csv(tmp_path):
    for name in ("a", "b"):
        builder.train("specs/mlp_digits.yaml", run_dir=tmp_path / name, quiet=True, epochs=3)
    assert rows_without_seconds(tmp_path / "a") == rows_without_seconds(tmp_path / "b")


def test_interrupted_and_resumed_run_ends_with_the_uninterrupted_weights(tmp_path):
    """mlp_digits has dropout, momentum, a cosine schedule and shuffling: all of it must resume exactly."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    builder.train("specs/mlp_digits.yaml", run_dir=whole, quiet=True, epochs=5)
    builder.train("specs/mlp_digits.yaml", run_dir=cut, quiet=True, epochs=5,
                  callback=lambda row: row["epoch"] == 2)  # stop as if killed after epoch 2's checkpoint
    assert checkpoint.load(cut / "last.pt")["epoch"] == 2
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    a, b = checkpoint.load(whole / "last.pt"), checkpoint.load(cut / "last.pt")
    assert b["epoch"] == 5
    for key, value in a["networks"]["model"].items():
        assert torch.equal(value, b["networks"]["model"][key]), key
    momentum_a = [s["momentum_buffer"] for s in a["optimizers"]["model"]["state"].values()]
    momentum_b = [s["momentum_buffer"] for s in b["optimizers"]["model"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(momentum_a, momentum_b))
    assert rows_without_seconds(whole) == rows_without_seconds(cut)


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf) at epoch (\d+), step (\d+)") as info:
        builder.train("specs/linear_regression.yaml", run_dir=tmp_path, quiet=True, epochs=50,
                      **{"optimizer.lr": 0.006})
    epoch = int(re.search(r"epoch (\d+)", str(info.value)).group(1))
    if epoch > 1:
        assert checkpoint.load(tmp_path / "last.pt")["epoch"] == epoch - 1
        assert f"last good checkpoint: {tmp_path / 'last.pt'}" in str(info.value)
    assert main(["train", "specs/linear_regression.yaml", "--run-dir", str(tmp_path / "cli"), "--quiet",
                 "--set", "train.optimizer.lr=0.006", "--epochs", "50"]) == 2


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path):
    _, history, _ = builder.train("specs/xor_mlp.yaml", run_dir=tmp_path, quiet=True, epochs=10,
                                  early_stopping={"monitor": "val.loss", "patience": 1},
                                  **{"optimizer.lr": 0.0})
    assert [r["epoch"] for r in history] == [1, 2]  # epoch 2 did not improve: patience 1 is used up


def test_gradient_clipping_by_norm_and_value_still_learns(tmp_path):
    for clip in ({"norm": 0.5}, {"value": 0.01}):
        _, history, _ = builder.train("specs/xor_mlp.yaml", run_dir=tmp_path / next(iter(clip)),
                                      quiet=True, epochs=10, clip_grad=clip)
        assert history[-1]["val.accuracy"] == 1.0


def test_train_section_mistakes_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(UserError, match="unknown key 'optimzer'.*did you mean 'optimizer'"):
        builder.train("specs/xor_mlp.yaml", run_dir=tmp_path, optimzer={"lr": 1})
    assert main(["train", "specs/xor_mlp.yaml", "--run-dir", str(tmp_path), "--set", "train.loss=mse2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["train.loss: unknown loss 'mse2' (did you mean 'mse'?); known: cross_entropy, "
                   "token_cross_entropy, nll, mse, l1, huber, bce, bce_with_logits"]
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_build_train_command_logs_json_lines(tmp_path, capsys):
    # in-process: the real command runs as a subprocess in test_train_examples and the DDP test
    assert main(["train", "specs/xor_mlp.yaml", "--epochs", "2", "--run-dir", str(tmp_path), "--log-json"]) == 0
    out = capsys.readouterr()
    lines = [json.loads(line) for line in out.out.splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2] and "val.accuracy" in lines[0]
    assert "Traceback" not in out.err


def test_check_train_finds_mistakes_without_reading_data():
    from builder.training.checks import option_errors
    from builder.spec.train_section import from_plain

    for spec in ("specs/mlp_digits.yaml", "specs/gan_tril.yaml", "specs/char_lstm.yaml", "examples/char_transformer.yaml"):
        assert option_errors(builder.load(spec).training) == []
    good = builder.load("specs/mlp_digits.yaml").train
    for change, node, message in [
        ({"data": {"source": "digits", "standrdize": True}}, "train.data", "no key 'standrdize'"),
        ({"loss": "cross_entropyy"}, "train.loss", "did you mean 'cross_entropy'"),
        ({"metrics": ["acc"]}, "train.metrics", "unknown metric"),
        ({"optimizer": {"type": "sgd", "lr": 0.1, "nesterov": True}}, "train.optimizer", "(?i)nesterov"),
        ({"schedule": {"type": "noam"}}, "train.schedule", "noam needs d_model"),
        ({"init": [{"params": "fc1.*", "type": "xavier"}]}, "train.init", "unknown initializer 'xavier'"),
    ]:
        (error,) = option_errors(from_plain({**good, **change}, ["model"]))
        assert error.node == node and re.search(message, error.message), (error, message)
