"""Small things the pictures must get right: torch's defaults hidden (also for LSTM, whose __init__
forwards *args), parameters named by spec path + torch's own name, an RNN's values shown batch-major,
and the training data's input preparation drawn above the input."""

from pathlib import Path

import builder
from viz.backward import backward_dot
from viz.dot_render import parse_dot
from viz.forward import forward_dot
from viz.labels import key_args
from viz.preparation import preparation_steps
from viz.step import one_step

ROOT = Path(__file__).resolve().parents[1]

LSTM_SPEC = """\
spec: 1
name: tiny-lstm
inputs:
  x: {shape: [B, T, 4]}
nodes:
  lstm: {op: LSTM, hidden_size: 6, num_layers: 1, dropout: 0.0}
  head: {op: Linear, in: lstm.output, out_features: 3}
outputs: [head]
"""


def test_lstm_defaults_hidden():
    assert key_args("LSTM", {"input_size": 4, "hidden_size": 6, "num_layers": 1, "dropout": 0.0,
                             "batch_first": True}) == ["4 -> 6"]
    assert key_args("LSTM", {"input_size": 4, "hidden_size": 6, "num_layers": 2, "dropout": 0.1}) == \
        ["4 -> 6", "drop=0.1", "layers=2"]


def test_lstm_backward_names_and_batch_major_shapes(tmp_path):
    path = tmp_path / "lstm.yaml"
    path.write_text(LSTM_SPEC)
    spec = builder.load(path)
    step = one_step(spec, batch_size=3)
    p = parse_dot(backward_dot(step.trace, spec.network().graph).to_dot())
    leaf = next(n for n in p.nodes if n.startswith("lstm.") and n.endswith("weight_ih_l0"))
    assert p.nodes[leaf]["label"].split("\n")[0] == "lstm: weight_ih_l0"  # not lstm.rnn.weight_ih_l0
    rnn = [a["label"] for n, a in p.nodes.items() if n.startswith("lstm:")]
    shapes = [line for label in rnn for line in label.split("\n") if line.startswith("value ")]
    assert shapes and all(line.startswith("value 3 x 32 x") for line in shapes), shapes  # B=3 first, T=32 (DEFAULT_SIZE)


def test_input_preparation_drawn_above_the_input():
    spec = builder.load(ROOT / "specs" / "mlp_digits.yaml")
    steps = preparation_steps(spec.train)
    assert steps == ["standardise: (x - mean) / std per feature, statistics of the training split"]
    p = parse_dot(forward_dot(spec.network().graph, preparation=steps).to_dot())
    inp = spec.network().inputs[0].name
    assert ("prep:" + inp, inp) in {(u, v) for u, v, _ in p.edges}
    assert "standardise" in p.nodes["prep:" + inp]["label"]
    assert preparation_steps({"data": {"source": "digits", "transform": {"resize": 28, "normalize": [0.5, 0.25]}}}) \
        == ["resize to 28 x 28", "normalise: (x - 0.5) / 0.25"]
    assert preparation_steps({"data": "digits"}) == []
