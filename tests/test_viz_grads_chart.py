"""`build viz --view grads`: the gradient-flow chart from real training steps, and --inputs/--data."""

from pathlib import Path

import numpy as np
import pytest

import builder
from builder.commands.cli import main
from viz.grads_chart import flags, measure

EXAMPLES = Path(__file__).resolve().parents[1] / "specs" / "examples"


def test_sigmoid_vanishes_relu_does_not():
    sig = measure(builder.load(EXAMPLES / "deep_sigmoid.yaml"), steps=3)
    relu = measure(builder.load(EXAMPLES / "deep_relu.yaml"), steps=3)
    assert sig.paths == [f"layers.{i}.fc" for i in range(10)] + ["head"]  # forward order
    assert len(sig.losses) == 3 and sig.losses[-1] != sig.losses[0]  # the optimizer stepped
    f_sig, f_relu = flags(sig), flags(relu)
    assert f_sig["layers.0.fc"] == "vanishing" and f_sig["head"] is None
    assert not any(f_relu.values())
    # a sigmoid's derivative is at most 1/4: the norm falls layer after layer towards the input
    assert sig.mean("layers.0.fc") < 1e-3 * sig.mean("layers.9.fc")
    assert relu.mean("layers.0.fc") > 1e-2 * relu.mean("layers.9.fc")
    for p in sig.paths:
        assert sig.max(p) >= sig.mean(p) > 0


def test_cli_writes_a_png(tmp_path, capsys):
    out = tmp_path / "grads.png"
    assert main(["viz", str(EXAMPLES / "deep_sigmoid.yaml"), "--view", "grads", "--steps", "2",
                 "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "11 spec nodes with parameters, 2 step(s)" in capsys.readouterr().out
    assert main(["viz", str(EXAMPLES / "deep_sigmoid.yaml"), "--view", "grads", "-o",
                 str(tmp_path / "g.dot")]) == 2


def test_inputs_file_feeds_the_step(tmp_path, capsys):
    spec = builder.load(EXAMPLES / "deep_relu.yaml")
    x = np.random.default_rng(0).standard_normal((4, 64)).astype("float32")
    np.savez(tmp_path / "in.npz", x=x, target=np.arange(4))
    flow = measure(spec, inputs_file=str(tmp_path / "in.npz"))
    assert "inputs from" in flow.note and flow.loss_name == "cross_entropy"
    np.savez(tmp_path / "bare.npz", x)  # an unnamed array (arr_0) and no target: the stand-in loss
    flow0 = measure(spec, inputs_file=str(tmp_path / "bare.npz"))
    assert flow0.loss_name == "mse to a random target" and "no target" in flow0.note
    assert flow0.mean("head") != flow.mean("head")
    np.savez(tmp_path / "bad.npz", x=x[:, :10])
    assert main(["viz", str(EXAMPLES / "deep_relu.yaml"), "--view", "backward", "--inputs",
                 str(tmp_path / "bad.npz"), "-o", str(tmp_path / "b.dot")]) == 2
    err = capsys.readouterr().err
    assert "bad.npz: input 'x' has shape [4, 10], the network wants [B, 64]" in err and "Traceback" not in err


def test_data_source_replaces_the_spec_data(tmp_path, capsys):
    spec = builder.load(EXAMPLES / "deep_relu.yaml")
    assert "from xor" not in measure(spec).note
    with pytest.raises(builder.UserError, match="--data xor"):
        measure(spec, data="xor")  # two features for a 64-feature input: said, not drawn on random inputs
    assert main(["viz", str(EXAMPLES / "deep_relu.yaml"), "--view", "backward", "--data", "digits",
                 "-o", str(tmp_path / "b.dot")]) == 0
    assert "from digits (train split)" in (tmp_path / "b.dot").read_text()


def test_weights_are_loaded(tmp_path):
    """--weights: the chart is of the given weights (here a head of zeros: nothing reaches the layers)."""
    import torch

    spec = builder.load(EXAMPLES / "deep_relu.yaml")
    module = builder.build(spec)
    state = {k: (torch.zeros_like(v) if k.startswith("head.") else v) for k, v in module.state_dict().items()}
    torch.save(state, tmp_path / "w.pt")
    flow = measure(spec, weights=str(tmp_path / "w.pt"))
    assert "weights from" in flow.note
    assert flow.mean("layers.9.fc") == 0.0 and flags(flow)["layers.9.fc"] == "zero"
    assert flow.mean("head") > 0
