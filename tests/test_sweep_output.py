"""Issue 20 item 13: `build sweep` off a terminal (a file, a pipe: CI logs, `2> sweep.log`) writes plain
lines, one per finished trial, and no tqdm carriage-return bar; on a terminal (a real pty here) the bar."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import termios
import random
import subprocess
import sys
from pathlib import Path

import pytest

from builder.sweep.driver import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_sweep import tiny  # noqa: E402

sys.path.pop(0)


def test_build_sweep_into_a_pipe_writes_one_line_per_trial_and_no_bar(tmp_path):
    spec = tiny(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "builder.commands.cli", "sweep", str(spec), "--trials", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("sweep: ")]
    assert [line.split(";")[0] for line in lines] == ["sweep: 1/2 trials done", "sweep: 2/2 trials done"]
    assert all("best val.accuracy" in line for line in lines)


def _read_all(fd) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the pty's other end closed
            return out
        if not chunk:
            return out
        out += chunk


@pytest.mark.parametrize("seed", range(8))
def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere(seed):
    rng = random.Random(seed)
    total, initial = rng.randint(1, 9), 0
    initial = rng.randint(0, total)
    steps = sorted(rng.choice(range(initial, total + 2)) for _ in range(rng.randint(1, 8)))
    best = [None if rng.random() < 0.2 else (rng.random(), rng.randrange(10)) for _ in steps]
    written = {}
    for kind in ("pipe", "pty"):
        read_fd, write_fd = os.pipe() if kind == "pipe" else pty.openpty()
        if kind == "pty":  # a terminal 100 columns wide (a new pty has none)
            fcntl.ioctl(write_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        with os.fdopen(write_fd, "w") as stream:
            bar = Progress(total, initial, "val.loss", stream=stream)
            for done, b in zip(steps, best):
                bar.update(done, b)
            bar.close()
        written[kind] = _read_all(read_fd).decode()
        os.close(read_fd)
    changes = [min(d, total) for i, d in enumerate(steps)
               if min(d, total) != (min(steps[i - 1], total) if i else initial)]
    lines = written["pipe"].splitlines()
    assert "\r" not in written["pipe"] and len(lines) == len(changes), written["pipe"]
    assert [line.split(";")[0] for line in lines] == [f"sweep: {d}/{total} trials done" for d in changes]
    assert "\r" in written["pty"] and f"{min(steps[-1], total)}/{total}" in written["pty"]
