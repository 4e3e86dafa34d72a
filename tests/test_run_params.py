"""One rule for every command that takes `--run DIR` (issue 20 item 3): the params the run was trained
with (its resolved.yaml) are the defaults, `--set` overrides them.

Real runs trained with a param changed by `--set` (the digits MLP with hidden=24, a character LSTM with
smaller sizes); every command that declares `--run` is then given the run without repeating that `--set`,
and must build the run's network (before, all but `generate` failed with "mis-shaped fc1.weight" or, worse,
drew the spec's default sizes). The test enumerates the CLI's commands, so a new one with `--run` must be
added here.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import pytest

from builder.commands.cli import main, make_parser

ROOT = Path(__file__).resolve().parents[1]
MLP = str(ROOT / "specs" / "mlp_digits.yaml")
LSTM = str(ROOT / "specs" / "char_lstm.yaml")
HIDDEN = 24  # the spec's default is 128


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    mlp, lstm = folder / "mlp", folder / "lstm"
    assert main(["train", MLP, "--set", f"hidden={HIDDEN}", "--epochs", "1", "--run-dir", str(mlp), "--quiet"]) == 0
    assert main(["train", LSTM, "--set", "hidden=12", "--set", "embed=6", "--set", "seq_len=16",
                 "--set", "train.data.batch_size=256", "--epochs", "1", "--run-dir", str(lstm), "--quiet"]) == 0
    x = np.random.default_rng(0).standard_normal((5, 64)).astype(np.float32)
    np.save(folder / "x.npy", x)
    np.savez(folder / "labelled.npz", x=x, y=np.arange(5))
    return folder, mlp, lstm


def commands_with_run() -> set:
    parser = make_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name for name, p in sub.choices.items() if any("--run" in a.option_strings for a in p._actions)}


def argvs(folder, mlp, lstm):
    """One invocation per command that takes --run, none repeating the run's `--set hidden=...`."""
    return {
        "export": ["export", MLP, "--run", str(mlp), "-o", str(folder / "m.onnx")],
        "predict": ["predict", MLP, "--run", str(mlp), "--input", str(folder / "x.npy")],
        "evaluate": ["evaluate", MLP, "--run", str(mlp), "--data", str(folder / "labelled.npz"),
                     "-o", str(folder / "eval")],
        "bench": ["bench", MLP, "--run", str(mlp), "--batch", "2", "--no-compile", "--seconds", "0.05"],
        "viz": ["viz", MLP, "--run", str(mlp), "--view", "both", "-o", str(folder / "v.dot")],
        "generate": ["generate", LSTM, "--run", str(lstm), "--prompt", "The ", "--max-new", "4", "--seed", "0"],
    }


def test_every_command_with_run_builds_the_run_s_network(runs, capsys):
    folder, mlp, lstm = runs
    calls = argvs(folder, mlp, lstm)
    # a command that gains --run must be checked here; `serve --run` is a server, so the function it serves
    # the run through (its export of the run's network) is checked instead of a process that never ends
    assert commands_with_run() == set(calls) | {"serve"}
    for name, argv in calls.items():
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 0, (name, err)
        assert "mis-shaped" not in err
    weights = {i.name: list(i.dims) for i in onnx.load(folder / "m.onnx").graph.initializer}
    assert weights["fc1.weight"] == [HIDDEN, 64]
    picture = (folder / "v.dot").read_text()
    assert f"64 -> {HIDDEN}" in picture and "64 -> 128" not in picture  # the forward view draws the run
    from builder.commands.serve import export_run
    (folder / "served").mkdir()
    served = export_run(mlp, folder / "served")
    assert {i.name: list(i.dims) for i in onnx.load(served).graph.initializer}["fc1.weight"] == [HIDDEN, 64]


def test_set_overrides_the_run_s_params(runs, capsys):
    folder, mlp, _ = runs
    # a param the weights do not depend on: taken from --set, the run's weights still fit
    assert main(["export", MLP, "--run", str(mlp), "--set", "dropout=0.5", "-o", str(folder / "d.onnx")]) == 0
    capsys.readouterr()
    # a size: --set wins over the run, so the run's weights no longer fit, said in one line
    assert main(["export", MLP, "--run", str(mlp), "--set", "hidden=16", "-o", str(folder / "h.onnx")]) == 2
    err = capsys.readouterr().err
    assert "fc1.weight" in err and "Traceback" not in err and not (folder / "h.onnx").exists()


def test_a_run_whose_param_the_spec_lost_is_one_line(runs, capsys, tmp_path):
    folder, mlp, _ = runs
    edited = tmp_path / "mlp_digits.yaml"
    edited.write_text(Path(MLP).read_text().replace("dropout: 0.1, ", "").replace("${dropout}", "0.1"))
    assert main(["export", str(edited), "--run", str(mlp), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "was trained with param 'dropout', which" in err and "no longer has" in err and "Traceback" not in err
