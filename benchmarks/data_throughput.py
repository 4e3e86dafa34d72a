"""Images per second of `source: images` (2 workers) against a plain torchvision-style ImageFolder loop.

Both read the same PNG files (written here: N images in 4 class folders, sizes 40..72 pixels) and prepare
them the same way: Pillow decode, convert to RGB, bilinear resize to 36x36, centre crop 32x32, float in
[0, 1], per-channel normalisation, batches of 64 in a shuffled order, 2 DataLoader worker processes.

    (a) builder: load_data({source: images, workers: 2, ...}).train.batches(...): each worker decodes a
        whole batch and sends one uint8 tensor; normalisation runs once per batch in the main process
    (b) the plain loop: a Dataset whose __getitem__ decodes one image to a normalised float tensor, and
        DataLoader(batch_size=64, shuffle=True, num_workers=2, persistent_workers=True)

One epoch of each is timed after one warm-up epoch (workers started, files in the page cache), the two
interleaved for `--rounds` rounds; medians and the ratio (a)/(b) in images/s are printed. Target (issue
23): >= 1.0x. Usage: python benchmarks/data_throughput.py [--images 1024] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from builder.data import load_data

MEAN, STD = [0.5, 0.45, 0.4], [0.25, 0.25, 0.25]


def write_images(folder: Path, n: int):
    rng = np.random.default_rng(0)
    for i in range(n):
        cls = folder / f"class{i % 4}"
        cls.mkdir(parents=True, exist_ok=True)
        h, w = (int(v) for v in rng.integers(40, 73, 2))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(cls / f"{i}.png")


class PlainImageFolder(torch.utils.data.Dataset):
    """What a torchvision ImageFolder + Resize/CenterCrop/ToTensor/Normalize does, per sample."""

    def __init__(self, root: Path):
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        self.samples = [(str(f), k) for k, c in enumerate(classes) for f in sorted((root / c).glob("*.png"))]
        self.mean, self.std = torch.tensor(MEAN).reshape(3, 1, 1), torch.tensor(STD).reshape(3, 1, 1)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        with Image.open(path) as im:
            im = im.convert("RGB").resize((36, 36), Image.BILINEAR)
            im = im.crop((2, 2, 34, 34))
            x = torch.from_numpy(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()).float() / 255
        return (x - self.mean) / self.std, label


def epoch_builder(split, epoch):
    n = 0
    for x, _ in split.batches(64, split.order(True, 0, epoch)):
        n += len(x)
    return n


def epoch_plain(loader):
    n = 0
    for x, _ in loader:
        n += len(x)
    return n


def main(images=1024, rounds=3):
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        write_images(root, images)
        data = load_data({"source": "images", "path": str(root), "resize": [36, 36], "crop": [32, 32], "workers": 2,
                          "normalize": {"mean": MEAN, "std": STD}, "split": [1.0]})
        plain = DataLoader(PlainImageFolder(root), batch_size=64, shuffle=True, num_workers=2, persistent_workers=True,
                           generator=torch.Generator().manual_seed(0))
        first_b, first_p = next(data.train.batches(64, data.train.order(False, 0, 0)))[0], next(iter(plain))[0]
        assert first_b.shape == first_p.shape == (64, 3, 32, 32) and first_b.dtype == first_p.dtype
        epoch_builder(data.train, 0), epoch_plain(plain)  # warm-up: workers started, files cached
        ours, theirs = [], []
        for r in range(rounds):
            t0 = time.perf_counter()
            n = epoch_builder(data.train, r + 1)
            ours.append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            m = epoch_plain(plain)
            theirs.append(m / (time.perf_counter() - t0))
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"images: {images} PNG files, 32x32 after resize+crop, batch 64, 2 workers, {rounds} rounds (medians)")
        print(f"(a) source: images      {a:8.0f} images/s")
        print(f"(b) plain ImageFolder   {b:8.0f} images/s")
        print(f"ratio (a)/(b): {a / b:.2f}x (target >= 1.0x)")
        return a / b


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    main(args.images, args.rounds)
