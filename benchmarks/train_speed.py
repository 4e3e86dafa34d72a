"""Per-epoch time of `build train` on specs/mlp_digits.yaml against two hand-written loops.

    (a) the notes' loop: TensorDataset + DataLoader(shuffle=True) + SGD, validation through a DataLoader
    (b) a bare loop over in-memory tensors: randperm, slice, index, step; validation in one batch

Same network (compiled from the spec), same standardised digits, batch 64, SGD(lr 0.1, momentum 0.9,
nesterov, weight decay 1e-4), one validation pass per epoch. The trainer runs with the same recipe
(constant lr, no parameter groups, no early stopping) and --quiet. Two trainer figures:

    loop     the `seconds` column of metrics.csv: training steps + validation, as in (a) and (b)
    all-in   (time of an N-epoch run - time of a 2-epoch run) / (N - 2): everything an extra epoch
             costs, also the checkpoint snapshot and writes, metrics.csv and the bookkeeping

Each is measured as wall time and as CPU time of the process (time.process_time: what the work costs,
not how long a shared, overloaded machine made it wait). Runs are interleaved (trainer, a, b, trainer,
...) and medians reported. Target (issue 4): trainer within 1.10x of (b) and faster than (a).
Usage: python benchmarks/train_speed.py [--rounds 5] [--epochs 30]
"""
from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import builder
from builder.data import load_data

SPEC = Path(__file__).resolve().parents[1] / "specs" / "mlp_digits.yaml"
RECIPE = {"optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
          "schedule": None, "early_stopping": None, "init": None}


def fresh_model(spec):
    torch.manual_seed(0)
    return builder.build(spec)


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)


def timed_epochs(epochs, one_epoch):
    """Wall and CPU seconds of each call of one_epoch()."""
    wall, cpu = [], []
    for _ in range(epochs):
        w, c = time.perf_counter(), time.process_time()
        one_epoch()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return wall, cpu


def notes_loop(spec, data, epochs):
    """(a) TensorDataset + DataLoader, as the notes write it."""
    model = fresh_model(spec)
    optimizer = sgd(model)
    train = DataLoader(TensorDataset(*data.train.fields), batch_size=64, shuffle=True)
    val = DataLoader(TensorDataset(*data.val.fields), batch_size=256)

    def epoch():
        model.train()
        for x, y in train:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            return sum((model(x).argmax(1) == y).sum().item() for x, y in val)
    return timed_epochs(epochs, epoch)


def bare_loop(spec, data, epochs):
    """(b) in-memory tensors, shuffled indices, no framework."""
    model = fresh_model(spec)
    optimizer = sgd(model)
    x_all, y_all = data.train.fields
    x_val, y_val = data.val.fields

    def epoch():
        model.train()
        perm = torch.randperm(len(x_all))
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            return (model(x_val).argmax(1) == y_val).sum().item()
    return timed_epochs(epochs, epoch)


def trainer_run(spec, epochs, folder):
    w, c = time.perf_counter(), time.process_time()
    builder.train(spec, run_dir=folder, quiet=True, epochs=epochs, **RECIPE)
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    with open(Path(folder) / "metrics.csv") as f:
        loop = [float(r["seconds"]) for r in csv.DictReader(f)]
    return wall, cpu, loop


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    spec = builder.load(SPEC)
    data = load_data(spec.train["data"])
    for ds in (data.train, data.val):
        ds.fields[0] = ds.fields[0].reshape(len(ds.fields[0]), -1)  # 1x8x8 -> 64, as the trainer views it
    t = {k: [] for k in ("trainer loop wall", "trainer all-in wall", "trainer all-in cpu",
                         "(a) wall", "(a) cpu", "(b) wall", "(b) cpu")}
    with tempfile.TemporaryDirectory() as tmp:
        trainer_run(spec, 2, Path(tmp) / "warm-up")  # imports, first-call costs
        notes_loop(spec, data, 1), bare_loop(spec, data, 1)
        for r in range(args.rounds):
            wall_n, cpu_n, loop_n = trainer_run(spec, args.epochs, Path(tmp) / f"n{r}")
            wall_2, cpu_2, _ = trainer_run(spec, 2, Path(tmp) / f"two{r}")
            t["trainer loop wall"] += loop_n[1:]  # the first epoch also pays for first calls
            t["trainer all-in wall"].append((wall_n - wall_2) / (args.epochs - 2))
            t["trainer all-in cpu"].append((cpu_n - cpu_2) / (args.epochs - 2))
            for name, loop in (("(a)", notes_loop), ("(b)", bare_loop)):
                wall, cpu = loop(spec, data, args.epochs)
                t[f"{name} wall"] += wall[1:]
                t[f"{name} cpu"] += cpu[1:]

    med = {k: statistics.median(v) for k, v in t.items()}
    print(f"mlp_digits, batch 64, {args.threads} thread(s), {args.rounds} interleaved rounds x {args.epochs} epochs")
    for name, value in med.items():
        print(f"  {name:22s} {value * 1000:8.2f} ms/epoch")
    for name, kind in (("trainer loop wall", "wall"), ("trainer all-in wall", "wall"), ("trainer all-in cpu", "cpu")):
        b, a = med[f"(b) {kind}"], med[f"(a) {kind}"]
        print(f"  {name:22s} {med[name] / b:5.2f}x (b)   {med[name] / a:5.2f}x (a)")
    print("  target: <= 1.10x (b) and < 1.00x (a)")


if __name__ == "__main__":
    main()
