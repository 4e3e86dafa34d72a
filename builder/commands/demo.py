"""`build demo`: the main job on built-in data, end to end, with the same commands a user types.

train specs/mlp_digits.yaml on scikit-learn's digits -> export the best checkpoint to ONNX (verified
against torch) -> predict held-out test images with onnxruntime -> draw the forward and backward pictures.
"""
from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np

DEFAULT_SPEC = "specs/mlp_digits.yaml"


def register(sub):
    p = sub.add_parser("demo", help="train, export, predict and draw the digits demo (the README's main job)")
    p.add_argument("spec", nargs="?", default=DEFAULT_SPEC, help=f"spec to demonstrate (default {DEFAULT_SPEC})")
    p.add_argument("--run-dir", default=None, help="run folder (default runs/<spec name>)")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--images", type=int, default=8, help="test images to predict (default 8)")
    p.set_defaults(func=run)


def _step(title: str, argv: list[str]) -> None:
    from builder.commands.cli import main
    from builder.core.errors import UserError
    print(f"\n== {title}\n$ build {shlex.join(argv)}", flush=True)
    code = main(argv)
    if code:
        raise UserError(f"demo stopped: `build {argv[0]}` exited with {code}")


def run(args) -> int:
    from builder import load
    from builder.data import load_data
    from builder.core.errors import UserError
    from builder.data.preparation import raw_from_prepared
    from builder.training.checkpoint import load as read_torch_file

    spec_path = Path(args.spec)
    if not spec_path.is_file():
        raise UserError(f"{spec_path}: no such spec (run `build demo` from the repository root)")
    spec = load(spec_path)
    run_dir = Path(args.run_dir or f"runs/{spec.name}")
    train = ["train", str(spec_path), "--run-dir", str(run_dir), "--overwrite"]  # a demo starts over
    if args.epochs:
        train += ["--epochs", str(args.epochs)]
    _step("train on the built-in data", train)

    onnx_path = run_dir / f"{spec.name}.onnx"
    _step("export the best checkpoint to ONNX and verify it against torch",
          ["export", str(spec_path), "--run", str(run_dir), "-o", str(onnx_path)])

    data = load_data(spec.train["data"])
    test = data.test or data.val or data.train
    rows = test.sample(args.images)
    x, y = rows[0], rows[test.n_inputs] if test.has_target else None
    first = spec.network().inputs[0]
    if all(isinstance(d, int) for d in first.shape[1:]):
        x = x.reshape(len(x), *first.shape[1:])  # e.g. 8x8 images flattened for the MLP, as the trainer feeds them
    stats = (read_torch_file(run_dir / "best.pt").get("input_preparation") or {}).get(first.name)
    if stats:  # the test split comes standardised; the exported model standardises by itself
        x = raw_from_prepared(x, stats)
    inputs = run_dir / "test_images.npy"
    np.save(inputs, x.numpy())
    print(f"\n(wrote {len(x)} held-out test images{', raw pixel values,' if stats else ''} to {inputs}; "
          "true labels: " + (" ".join(str(int(v)) for v in y) if y is not None else "none") + ")")
    _step("predict them with onnxruntime", ["predict", str(onnx_path), "--input", str(inputs)])

    _step("draw the forward graph", ["viz", str(spec_path), "--view", "forward",
                                     "-o", str(run_dir / "forward.png")])
    _step("draw the backward (autograd) graph with gradient norms",
          ["viz", str(spec_path), "--view", "backward", "--run", str(run_dir), "--grads",
           "-o", str(run_dir / "backward.png")])
    print(f"\nDone. Everything is in {run_dir}/: metrics.csv, curves, best.pt/last.pt, {onnx_path.name}, "
          "forward.png, backward.png")
    return 0
