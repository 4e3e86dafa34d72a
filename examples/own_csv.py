"""Your own CSV, end to end: what a new user does with data the project does not ship.

scikit-learn's wine (a text label column: the cultivar's name) and diabetes (a raw target, 25..346) are
written as ordinary CSV files with a header, then trained, exported to ONNX, predicted and evaluated with
the `build` commands (run in this process; each line is printed as you would type it):

    python examples/own_csv.py                 # runs/examples/own_csv/
    python examples/own_csv.py --epochs 5      # quicker

Nothing is counted by hand besides the input width, and nothing is in standardised units: the ONNX files
take raw columns and answer with class names (wine) or values in the target's units (diabetes).
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

WINE_NAMES = ["nebbiolo", "grignolino", "barbera"]  # scikit-learn's ids 0, 1, 2 (ids here: sorted names)

WINE = """spec: 1
name: wine
inputs: {x: {shape: [B, 13]}}
nodes:
  hidden: {op: Linear, out_features: 16}
  act: {op: ReLU}
  out: {op: Linear, out_features: 3}
train:
  data: {source: csv, target: cultivar, standardize: true, batch_size: 16, seed: 0,
         files: {train: DIR/wine_train.csv, val: DIR/wine_val.csv, test: DIR/wine_test.csv}}
  loss: {type: cross_entropy, weight: balanced}
  optimizer: {type: adam, lr: 1e-2}
  epochs: 20
  metrics: [accuracy, f1]
  early_stopping: {monitor: val.accuracy, patience: 5}
"""

DIABETES = """spec: 1
name: diabetes
inputs: {x: {shape: [B, 10]}}
nodes:
  out: {op: Linear, out_features: 1}
train:
  data: {source: csv, target: progression, standardize: true, standardize_target: true, seed: 0, batch_size: 64,
         files: {train: DIR/diabetes_train.csv, test: DIR/diabetes_test.csv}}
  loss: mse
  optimizer: {type: adam, lr: 1E-2}
  epochs: 60
  metrics: [r2, mae]
"""


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def split_three(n, seed):
    """70% / 15% / 15% of n rows, shuffled by `seed`."""
    order = np.random.default_rng(seed).permutation(n)
    return order[:int(0.7 * n)], order[int(0.7 * n):int(0.85 * n)], order[int(0.85 * n):]


def write_data(folder: Path) -> dict:
    """The CSV files and the two specs; returns the spec paths and the diabetes test targets."""
    from sklearn.datasets import load_diabetes, load_wine

    wine = load_wine()
    rows = [[f"{v:g}" for v in x] + [WINE_NAMES[y]] for x, y in zip(wine.data, wine.target)]
    # seed 1: a test split on which LogisticRegression scores 1.0 (on seed 0's 27 rows it scores 0.926)
    for name, part in zip(("train", "val", "test"), split_three(len(rows), seed=1)):
        write_csv(folder / f"wine_{name}.csv", list(wine.feature_names) + ["cultivar"], [rows[i] for i in part])
    diabetes = load_diabetes(scaled=False)
    rows = [[f"{v:g}" for v in x] + [f"{y:g}"] for x, y in zip(diabetes.data, diabetes.target)]
    train, val, test = split_three(len(rows), seed=0)
    header = list(diabetes.feature_names) + ["progression"]
    write_csv(folder / "diabetes_train.csv", header, [rows[i] for i in np.concatenate([train, val])])
    write_csv(folder / "diabetes_test.csv", header, [rows[i] for i in test])
    specs = {}
    for name, text in (("wine", WINE), ("diabetes", DIABETES)):
        specs[name] = folder / f"{name}.yaml"
        specs[name].write_text(text.replace("DIR", str(folder)))
    return {"specs": specs, "diabetes_test": diabetes.target[test]}


def build(*argv) -> None:
    """One `build` command, printed and run in this process (as `build ...` would run it)."""
    from builder.commands.cli import main

    print("$ build " + " ".join(map(str, argv)), flush=True)
    if main([str(a) for a in argv]) != 0:
        raise SystemExit(f"build {argv[0]} failed")


def main(runs="runs/examples", epochs=None):
    folder = Path(runs) / "own_csv"
    folder.mkdir(parents=True, exist_ok=True)
    made = write_data(folder)
    more = ["--epochs", epochs] if epochs else []
    out = {"folder": folder, **made}
    for name, spec in made["specs"].items():
        run = folder / f"run_{name}"
        build("train", spec, "--run-dir", run, "--overwrite", "--quiet", *more)
        build("export", spec, "--run", run, "-o", folder / f"{name}.onnx")
        out[name] = {"run": run, "onnx": folder / f"{name}.onnx", "test": json.loads((run / "test.json").read_text())}

    # classification: class names and probabilities from the ONNX file, on a CSV in the training layout
    build("predict", folder / "wine.onnx", "--input", folder / "wine_test.csv", "-o", folder / "wine_pred.csv")
    with open(folder / "wine_pred.csv") as f:
        predicted = [row[0] for row in list(csv.reader(f))[1:]]
    with open(folder / "wine_test.csv") as f:
        truth = [row[-1] for row in list(csv.reader(f))[1:]]
    out["wine"]["accuracy_from_names"] = float(np.mean([p == t for p, t in zip(predicted, truth)]))
    build("evaluate", folder / "wine.onnx", "--data", folder / "wine_test.csv", "-o", folder / "wine_eval")

    # regression: the ONNX model answers in the target's units (no de-standardising by hand)
    build("predict", folder / "diabetes.onnx", "--input", folder / "diabetes_test.csv", "-o", folder / "diabetes_pred.csv")
    with open(folder / "diabetes_pred.csv") as f:
        values = np.array([float(row[0]) for row in list(csv.reader(f))[1:]])
    target = made["diabetes_test"]
    out["diabetes"]["onnx_r2"] = float(1 - ((values - target) ** 2).sum() / ((target - target.mean()) ** 2).sum())
    out["diabetes"]["prediction_range"] = (float(values.min()), float(values.max()))
    print(f"wine: {out['wine']['accuracy_from_names']:.3f} of the test rows named right by the ONNX file; "
          f"diabetes: ONNX R2 {out['diabetes']['onnx_r2']:.3f}, predictions "
          f"{values.min():.0f}..{values.max():.0f} (targets {target.min():.0f}..{target.max():.0f})")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="train this many epochs (default: the specs' own)")
    parser.add_argument("--runs", default="runs/examples", help="where the files and run folders go")
    args = parser.parse_args()
    main(runs=args.runs, epochs=args.epochs)
