"""The typed `train:` config: defaults decided once, positions kept, every mistake reported in one run,
and one resolved config read by both the trainer and the backward picture."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import builder
from builder.commands.cli import main
from builder.core.errors import SpecError, UserError
from builder.spec.train_section import MODE_DEFAULTS, from_plain

ROOT = Path(__file__).parent.parent
CHAR_LSTM = (ROOT / "specs" / "char_lstm.yaml").read_text(encoding="utf-8").split("\ntrain:")[0]


def test_defaults_are_decided_per_mode_in_one_place():
    supervised = from_plain({"data": "digits"}, ["model"])
    gan = from_plain({"data": "tril"}, ["generator", "discriminator"])
    lm = from_plain({"data": "text"}, ["model"])  # data written as a string
    assert (supervised.mode, supervised.data.batch_size, supervised.loss, supervised.metrics) == \
        ("supervised", 32, "mse", ())
    assert (gan.mode, gan.data.batch_size, gan.gan.loss, gan.gan.k) == ("gan", 64, "minimax", 1)
    assert (lm.mode, lm.loss, lm.metrics) == ("language_model", "cross_entropy", ("perplexity",))
    assert from_plain({"data": "tril", "gan": {"loss": "wgan"}}, ["generator", "discriminator"]).gan.k == 5
    assert MODE_DEFAULTS["gan"].batch_size == 64 and MODE_DEFAULTS["supervised"].batch_size == 32
    given = from_plain({"data": {"source": "digits", "batch_size": 8, "seed": 3}, "loss": "cross_entropy",
                        "early_stopping": {"monitor": "val.accuracy", "patience": 2}}, ["model"])
    assert (given.data.batch_size, given.seed, given.loss) == (8, 3, "cross_entropy")
    assert given.early_stopping.maximize and given.early_stopping.patience == 2


def test_plain_mistakes_are_all_listed():
    with pytest.raises(UserError) as e:
        from_plain({"data": "xor", "epochs": 1.5, "gan": {"loss": "hinge", "kk": 2}, "clip_grad": {"norm": "x"}},
                   ["model"])
    lines = str(e.value).splitlines()
    assert lines == ["train.epochs: must be a whole number >= 0, got 1.5",
                     "train.clip_grad.norm: must be a number >= 0, got 'x'",
                     "train.gan.kk: unknown key 'kk' (did you mean 'k'?)",
                     "train.gan.loss: unknown loss 'hinge'; known: minimax, non_saturating, wgan, wgan_gp"]


def test_spec_stage_keeps_positions_and_names_the_set(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(CHAR_LSTM + "\ntrain:\n  data: {source: text, batch_size: 0}\n  early_stopping: {mode: up}\n",
                    encoding="utf-8")
    with pytest.raises(SpecError) as e:
        builder.load(spec)
    assert [(d.line, d.col, d.node) for d in e.value.diagnostics] == \
        [(15, 24, "train.data.batch_size"), (16, 20, "train.early_stopping.mode")]  # the inner keys
    assert main(["check", "specs/mlp_digits.yaml", "--set", "train.epochs=many", "--set", "train.loss=mse2",
                 "--set", "train.data.shuffle=3"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "specs/mlp_digits.yaml: error: --set train.epochs: must be a whole number >= 0, got 'many'",
        "specs/mlp_digits.yaml: error: --set train.data.shuffle: must be true or false, got 3",
        "specs/mlp_digits.yaml: error: --set train.loss: unknown loss 'mse2' (did you mean 'mse'?); known: "
        "cross_entropy, token_cross_entropy, nll, mse, l1, huber, bce, bce_with_logits"]


def test_trainer_and_backward_picture_read_the_same_resolved_config(tmp_path):
    """`data: text` written as a string: a language model for both, trained and drawn with cross-entropy."""
    from viz.step import one_step

    path = tmp_path / "lm.yaml"
    path.write_text(CHAR_LSTM + "\ntrain:\n  data: text\n  epochs: 1\n", encoding="utf-8")
    spec = builder.load(path, hidden=16, embed=8)
    assert (spec.training.mode, spec.training.loss) == ("language_model", "cross_entropy")
    step = one_step(spec, batch_size=2)
    assert step.trace.loss_name == "cross_entropy" and "from text" in step.batch_note
    _, history, _ = builder.train(spec, run_dir=tmp_path / "run", quiet=True)
    assert "val.perplexity" in history[0] and history[0]["val.perplexity"] < 128


def test_config_module_imports_no_torch():
    """The config module and what it imports stay torch-free (the packages' __init__ files, which gather the
    whole core, are bypassed: it is the config's own imports that are checked)."""
    code = ("import sys, types\n"
            "for name, sub in (('builder', 'builder'), ('builder.training', 'builder/training')):\n"
            "    pkg = types.ModuleType(name); pkg.__path__ = [sub]; sys.modules[name] = pkg\n"
            "import builder.spec.train_section\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
