"""A time series, end to end: a CSV of hourly readings -> windows of 24 hours -> a forecaster -> ONNX ->
the next hour's value from the raw series, in the data's units.

    python examples/forecaster.py                   # runs/examples/forecaster/

`window: {lookback: 24, horizon: 1}` cuts the series into samples after splitting it by time (the last
rows are the test split; no window crosses a split); `standardize_target` trains on scaled targets and
the exported model answers in degrees again. `build predict` takes the raw series, like training did.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from own_csv import build

SPEC = """spec: 1
name: forecaster
inputs: {x: {shape: [B, 24, 2]}}
nodes:
  flat: {op: Flatten}
  hidden: {op: Linear, out_features: 32}
  act: {op: ReLU}
  out: {op: Linear, out_features: 1}
train:
  data: {source: csv, path: DIR/readings.csv, target: temperature, drop: [hour],
         window: {lookback: 24, horizon: 1, stride: 1}, split: [0.7, 0.15, 0.15],
         standardize: true, standardize_target: true, batch_size: 32, seed: 0}
  loss: mse
  optimizer: {type: adam, lr: 0.01}
  metrics: [mae, r2]
  epochs: 20
"""


def write_readings(path: Path, hours: int, seed: int = 0):
    """Temperature around 15 degrees with a daily cycle and noise; humidity moving against it."""
    rng = np.random.default_rng(seed)
    t = np.arange(hours)
    temperature = 15 + 6 * np.sin(2 * np.pi * (t - 9) / 24) + rng.normal(0, 0.4, hours)
    humidity = 70 - 2 * (temperature - 15) + rng.normal(0, 1, hours)
    path.write_text("hour,humidity,temperature\n" + "".join(f"{h},{u:.2f},{v:.2f}\n"
                                                           for h, u, v in zip(t, humidity, temperature)))
    return temperature


def main(runs="runs/examples", epochs=None, hours=24 * 30):
    folder = Path(runs) / "forecaster"
    folder.mkdir(parents=True, exist_ok=True)
    write_readings(folder / "readings.csv", hours)
    recent = write_readings(folder / "recent.csv", 24 * 3, seed=1)
    spec = folder / "forecaster.yaml"
    spec.write_text(SPEC.replace("DIR", str(folder)))
    more = ["--epochs", epochs] if epochs else []
    build("train", spec, "--run-dir", folder / "run", "--overwrite", "--quiet", *more)
    build("export", spec, "--run", folder / "run", "-o", folder / "forecaster.onnx")
    build("predict", folder / "forecaster.onnx", "--input", folder / "recent.csv", "-o", folder / "forecasts.npy")
    build("evaluate", folder / "forecaster.onnx", "--data", folder / "recent.csv", "-o", folder / "evaluation")
    forecasts = np.load(folder / "forecasts.npy")[:, 0]
    metrics = json.loads((folder / "evaluation" / "metrics.json").read_text())
    print(f"recent days: MAE {metrics['mae']:.2f} degrees over {metrics['rows']} forecasts; "
          f"the next hour after the file: {forecasts[-1]:.1f} degrees")
    return {"metrics": metrics, "forecasts": forecasts, "recent": recent, "folder": folder}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="train this many epochs (default: the spec's own)")
    parser.add_argument("--runs", default="runs/examples", help="where the files and run folders go")
    args = parser.parse_args()
    main(runs=args.runs, epochs=args.epochs)
