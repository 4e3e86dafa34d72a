"""Issue 20 item 9: a plain onnxruntime user (numpy + onnxruntime, no builder) can feed a CSV-trained model
and read its outputs from the ONNX metadata alone: `builder.input_columns` (where each column lands after
one-hot) and `builder.output_kinds` (logits or probabilities). The documented script runs for real here
against a trained, exported model and must agree with `build predict`."""
from __future__ import annotations

import ast
import csv
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import builder
from builder.commands.cli import main
from builder.data.files import column_positions, read_csv
from export import metadata

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "plain_onnxruntime.py"
COLORS, SHADES, KINDS = ["red", "green", "blue"], ["pale", "deep", "dark", "bright"], ["plum", "fig", "kiwi"]


def _rows(n, seed):
    """Rows whose class is mostly the color (so a wrong one-hot order is a wrong answer)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        c = rng.randrange(3)
        kind = KINDS[c] if rng.random() < 0.9 else rng.choice(KINDS)
        rows.append({"size": f"{rng.uniform(0, 50):.3f}", "color": COLORS[c], "weight": f"{rng.gauss(3, 1):.3f}",
                     "shade": rng.choice(SHADES), "kind": kind})
    return rows


def _write(path, rows, header):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


SPEC = """spec: 1
name: fruit
inputs: {x: {shape: [B, 9]}}
nodes:
  hidden: {op: Linear, out_features: 16}
  act: {op: ReLU}
  out: {op: Linear, out_features: 3}
train:
  data: {source: csv, target: kind, standardize: true, batch_size: 32, seed: 0,
         files: {train: DIR/train.csv, test: DIR/test.csv}}
  loss: cross_entropy
  optimizer: {type: adam, lr: 1e-2}
  epochs: 4
"""


def _documented_script() -> str:
    """The plain onnxruntime script as the docs show it (a fenced block starting with its file name)."""
    for page in sorted((ROOT / "docs").rglob("*.md")):
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S):
            if block.startswith("# plain_onnxruntime.py"):
                return block
    raise AssertionError("no docs page shows examples/plain_onnxruntime.py")


def test_the_documented_plain_onnxruntime_script_agrees_with_build_predict(tmp_path, capsys):
    assert _documented_script() == SCRIPT.read_text()
    imported = {a.name.split(".")[0] for node in ast.walk(ast.parse(SCRIPT.read_text()))
                if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(ast.parse(SCRIPT.read_text()))
                 if isinstance(node, ast.ImportFrom)}
    assert imported == {"csv", "json", "sys", "numpy", "onnxruntime"}
    header = ["size", "color", "weight", "shade", "kind"]
    _write(tmp_path / "train.csv", _rows(240, 0), header)
    # the file to predict has its columns in another order: the script and predict read them by name
    _write(tmp_path / "test.csv", _rows(40, 1), ["shade", "kind", "weight", "color", "size"])
    spec = tmp_path / "fruit.yaml"
    spec.write_text(SPEC.replace("DIR", str(tmp_path)))
    assert main(["train", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["export", str(spec), "--run", str(tmp_path / "run"), "-o", str(tmp_path / "fruit.onnx")]) == 0
    assert main(["predict", str(tmp_path / "fruit.onnx"), "--input", str(tmp_path / "test.csv"),
                 "-o", str(tmp_path / "pred.csv")]) == 0
    capsys.readouterr()
    with open(tmp_path / "pred.csv") as f:
        predicted = list(csv.reader(f))[1:]
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "fruit.onnx"), str(tmp_path / "test.csv")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    plain = [line.split(",") for line in done.stdout.splitlines()]
    assert len(plain) == len(predicted) == 40
    assert [p[0] for p in plain] == [p[0] for p in predicted]
    np.testing.assert_allclose(np.array([p[1:] for p in plain], float), np.array([p[1:] for p in predicted], float),
                               atol=2e-6)
    # the model learned the color: a one-hot in the wrong place would not score this
    truth = [r["kind"] for r in _rows(40, 1)]
    assert np.mean([p[0] == t for p, t in zip(plain, truth)]) >= 0.7
    meta = metadata.read_metadata({p.key: p.value for p in onnx.load(str(tmp_path / "fruit.onnx")).metadata_props})
    assert meta["output_kinds"] == {"out": "logits"}
    assert [(c["column"], c["at"], c["width"]) for c in meta["input_columns"]["x"]] == \
        [("size", 0, 1), ("color", 1, 3), ("weight", 4, 1), ("shade", 5, 4)]
    assert meta["input_columns"]["x"][1]["categories"] == sorted(COLORS)


@pytest.mark.parametrize("seed", range(30))
def test_column_positions_rebuild_what_the_reader_encodes(tmp_path, seed):
    """For random tables (numbers and categories in any order, missing numbers filled by the mean), a row
    built from column_positions alone equals read_csv's encoded row."""
    rng = random.Random(seed)
    kinds = [rng.choice(["number", "category"]) for _ in range(rng.randint(1, 6))]
    names = [f"c{i}" for i in range(len(kinds))]
    n = rng.randint(2, 12)
    table = []
    for _ in range(n):
        row = {}
        for name, kind in zip(names, kinds):
            if kind == "number":
                row[name] = "NA" if rng.random() < 0.15 else f"{rng.uniform(-5, 5):.4g}"
            else:
                row[name] = rng.choice(["b", "a", "z", "m"][:rng.randint(1, 4)])
        row["y"] = f"{rng.random():.3f}"
        table.append(row)
    for name, kind in zip(names, kinds):  # a number column needs one number to be one
        if kind == "number" and all(r[name] == "NA" for r in table):
            table[0][name] = "1.5"
    _write(tmp_path / "t.csv", table, names + ["y"])
    (x, _), _, info = read_csv(tmp_path / "t.csv", target="y", missing="mean")
    positions = column_positions(info["layout"])
    assert sum(c["width"] for c in positions) == x.shape[1]
    rebuilt = np.zeros_like(x)
    for i, row in enumerate(table):
        for c in positions:
            v = row[c["column"]]
            if c["kind"] == "category":
                rebuilt[i, c["at"] + c["categories"].index(v)] = 1.0
            else:
                rebuilt[i, c["at"]] = c["fill"] if v == "NA" else float(v)
    np.testing.assert_array_equal(rebuilt, x)


@pytest.mark.parametrize("last, loss, kind", [
    (last, loss, metadata._KIND_OF_OP.get(last) or metadata._KIND_OF_LOSS[loss])
    for last in ("Linear", "Softmax", "LogSoftmax", "Sigmoid")
    for loss in sorted(metadata._KIND_OF_LOSS)])
def test_output_kinds_follow_the_last_op_then_the_loss(last, loss, kind):
    node = "{op: Linear, out_features: 3}" if last == "Linear" else f"{{op: {last}" + \
        (", dim: 1}" if "Softmax" in last else "}")
    spec = builder.load(f"""spec: 1
inputs: {{x: {{shape: [B, 4]}}}}
nodes:
  fc: {{op: Linear, out_features: 3}}
  out: {node}
outputs: [out]
train: {{data: {{source: toy_linear, n: 8}}, loss: {loss}}}
""")
    graph = spec.network().graph
    assert metadata.output_kinds(spec, graph, ["out"]) == {"out": kind}
    untrained = builder.load("spec: 1\ninputs: {x: {shape: [B, 4]}}\nnodes:\n  out: {op: Linear, out_features: 3}\n")
    assert metadata.output_kinds(untrained, untrained.network().graph, ["out"]) == {"out": "unknown"}
