"""Checkpoints survive SIGKILL in the middle of a write; training runs on 2 processes (DDP, gloo)."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import torch

from builder.training import checkpoint

WRITER = """
import sys, torch
from builder.training.checkpoint import save_atomic
path = sys.argv[1]
i = 0
while True:
    save_atomic({"i": i, "w": torch.full((2_000_000,), float(i))}, path)  # 8 MB: a write takes a while
    print(i, flush=True)
    i += 1
"""


def test_sigkill_during_checkpoint_writes_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    inside_a_write = 0
    # kill at varied moments until at least 3 kills landed inside a write (a busy machine shifts timings;
    # each kill, wherever it lands, must leave a loadable checkpoint)
    for attempt, delay in enumerate((0.0, 0.013, 0.029, 0.051, 0.007, 0.021, 0.037, 0.003) * 3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        first = proc.stdout.readline()  # one checkpoint is complete
        assert first.strip().isdigit()
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)  # lands at a random point of a later write
        proc.wait()
        done = [int(first)] + [int(x) for x in proc.stdout.read().split()]
        proc.stdout.close()
        state = checkpoint.load(path)
        assert state["i"] >= done[-1] and state["i"] <= done[-1] + 1  # the last finished, or the one renamed
        assert torch.equal(state["w"], torch.full((2_000_000,), float(state["i"])))
        leftovers = list(tmp_path.glob(".last.pt.*.tmp"))
        if leftovers:  # this kill landed inside a write: its unfinished temporary file is still there
            inside_a_write += 1
            checkpoint.remove_temporaries(tmp_path)
            assert not list(tmp_path.glob(".last.pt.*.tmp")) and checkpoint.load(path)
        if inside_a_write >= 3 and attempt >= 3:
            break
    assert inside_a_write >= 3


def test_ddp_on_two_cpu_processes_trains_and_only_rank_0_writes(tmp_path):
    run_dir = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "builder.commands.cli", "train", "specs/mlp_digits.yaml",
                          "--nproc-per-node", "2", "--device", "cpu", "--epochs", "3", "--run-dir", str(run_dir),
                          "--log-json"], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["epoch"] for r in lines] == [1, 2, 3]  # rank 0 alone prints
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert len(rows) == 3 and float(rows[-1]["val.accuracy"]) > 0.85
    assert json.loads((run_dir / "test.json").read_text())["accuracy"] > 0.85
    # 1,438 training digits shared by 2 ranks at batch 64: 12 steps per rank and epoch (23 on one process)
    state = checkpoint.load(run_dir / "last.pt")
    assert state["schedules"]["model"]["steps"] == 3 * 12
