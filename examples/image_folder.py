"""Your own images, end to end: a folder of class folders -> a CNN -> ONNX -> predictions on PNG files.

The script draws three kinds of small pictures (horizontal stripes, vertical stripes, a centred blob) in
random colours with noise, saves them as PNG files in class folders as a camera roll would give them
(sizes differ), and then runs the `build` commands on them:

    python examples/image_folder.py                 # runs/examples/image_folder/
    python examples/image_folder.py --epochs 3      # quicker

`source: images` decodes them with Pillow in two worker processes, resizes and crops them, flips and
shifts the training images, and the exported model carries the preparation: `build predict` takes the PNG
files (a glob here) and answers with the folder names.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from own_csv import build

CLASSES = ("blob", "horizontal", "vertical")

SPEC = """spec: 1
name: shapes
inputs: {x: {shape: [B, 3, 16, 16]}}
nodes:
  conv1: {op: Conv2d, out_channels: 8, kernel_size: 3, padding: 1}
  act1: {op: ReLU}
  pool1: {op: MaxPool2d, kernel_size: 2}
  conv2: {op: Conv2d, out_channels: 16, kernel_size: 3, padding: 1}
  act2: {op: ReLU}
  pool2: {op: AdaptiveAvgPool2d, output_size: 1}
  flat: {op: Flatten}
  out: {op: Linear, out_features: 3}
train:
  data: {source: images, path: DIR/photos, resize: [18, 18], crop: [16, 16], workers: 2, batch_size: 16,
         normalize: {mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}, augment: {flip: true, crop: 1},
         split: [0.8, 0.2], seed: 0}
  loss: cross_entropy
  optimizer: {type: adam, lr: 0.01}
  metrics: [accuracy]
  epochs: 12
"""


def draw(kind, rng, size):
    """One picture as uint8 [H, W, 3]: noise, then the shape in a random colour."""
    h, w = size
    img = rng.integers(0, 60, (h, w, 3))
    colour = rng.integers(120, 256, 3)
    if kind == "horizontal":
        rows = np.arange(h) % 4 < 2
        img[rows] = colour
    elif kind == "vertical":
        cols = np.arange(w) % 4 < 2
        img[:, cols] = colour
    else:
        yy, xx = np.mgrid[:h, :w]
        img[(yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 3) ** 2] = colour
    return img.astype(np.uint8)


def write_images(folder: Path, per_class=30, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = tuple(int(v) for v in rng.integers(18, 30, 2))
            Image.fromarray(draw(kind, rng, size)).save(folder / kind / f"{kind}_{i}.png")


def main(runs="runs/examples", epochs=None, per_class=30):
    folder = Path(runs) / "image_folder"
    write_images(folder / "photos", per_class)
    write_images(folder / "new_photos", max(2, per_class // 5), seed=1)
    spec = folder / "shapes.yaml"
    spec.write_text(SPEC.replace("DIR", str(folder)))
    more = ["--epochs", epochs] if epochs else []
    build("train", spec, "--run-dir", folder / "run", "--overwrite", "--quiet", *more)
    build("export", spec, "--run", folder / "run", "-o", folder / "shapes.onnx")
    build("predict", folder / "shapes.onnx", "--input", str(folder / "new_photos" / "*" / "*_0.png"),
          "-o", folder / "predicted.csv")
    build("evaluate", folder / "shapes.onnx", "--data", folder / "new_photos", "-o", folder / "evaluation")
    metrics = json.loads((folder / "evaluation" / "metrics.json").read_text())
    predicted = [line.split(",")[0] for line in (folder / "predicted.csv").read_text().splitlines()[1:]]
    print(f"new photos: accuracy {metrics['accuracy']:.3f} over {metrics['rows']}; one per class named {predicted}")
    return {"accuracy": metrics["accuracy"], "predicted": predicted, "folder": folder}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="train this many epochs (default: the spec's own)")
    parser.add_argument("--runs", default="runs/examples", help="where the files and run folders go")
    args = parser.parse_args()
    main(runs=args.runs, epochs=args.epochs)
