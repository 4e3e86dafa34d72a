"""What every chapter's walkthrough does: train a spec with the `build train` command or with the Python
API, then look inside the trained network with the Python API.

    python examples/01_linear_regression.py            # Python API: builder.train(...)
    python examples/01_linear_regression.py --cli      # the same run through `build train`
    python examples/01_linear_regression.py --epochs 2 # quicker
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

import builder
from builder.training import checkpoint

ROOT = Path(__file__).resolve().parents[1]


def train(spec_path, run_dir, cli=False, params=None, epochs=None, **overrides):
    """Train `spec_path` (with `params` and train `overrides`); returns (module, history, test metrics)."""
    spec_path, params = str(ROOT / spec_path), dict(params or {})
    if epochs is not None:
        overrides["epochs"] = epochs
    if not cli:
        module, history, run_dir = builder.train(builder.load(spec_path, **params), run_dir=run_dir, quiet=True,
                                                 **overrides)
        return module, history, _test_metrics(run_dir)
    command = [sys.executable, "-m", "builder.commands.cli", "train", spec_path, "--run-dir", str(run_dir), "--quiet"]
    for key, value in params.items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    for key, value in overrides.items():
        command += ["--set", f"train.{key}={json.dumps(value)}"]
    print("$", " ".join(command[2:]).replace("builder.commands.cli", "build"))
    subprocess.run(command, check=True)
    # the run folder has everything: rebuild the network and load the best weights into it
    spec = builder.load(spec_path, **params)
    state = checkpoint.load(Path(run_dir) / "best.pt")
    modules = builder.build_all(spec)
    for name, module in modules.items():
        module.load_state_dict(state["networks"][name])
        module.eval()
    module = modules if len(modules) > 1 else next(iter(modules.values()))
    return module, state["history"], _test_metrics(run_dir)


def _test_metrics(run_dir):
    path = Path(run_dir) / "test.json"
    return json.loads(path.read_text()) if path.exists() else {}


def arguments(default_epochs=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", action="store_true", help="train through `build train` instead of builder.train")
    ap.add_argument("--epochs", type=int, default=default_epochs, help="override train.epochs")
    ap.add_argument("--runs", default="runs/examples", help="folder for the run folders")
    return ap.parse_args()


def show(title, value):
    if isinstance(value, torch.Tensor):
        value = value.detach()
    print(f"{title}: {value}")
