"""`build serve` as a real process for tests: a free port on 127.0.0.1, started, waited for until ready, and
always stopped (terminate, then kill), its output in a log file nobody has to read while it runs."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


@contextlib.contextmanager
def serving(model, log_path: Path, *args: str, wait_s: float = 120):
    """(process, port) of `build serve MODEL --port P ARGS` once it answers /v2/health/ready."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with open(log_path, "w") as log:  # a file, not a pipe nobody reads: the server never blocks on it
        proc = subprocess.Popen([sys.executable, "-m", "builder.commands.cli", "serve", str(model),
                                 "--port", str(port), *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + wait_s
            while not ready(port):
                assert proc.poll() is None, Path(log_path).read_text()
                assert time.monotonic() < deadline, f"build serve did not become ready in {wait_s:.0f} s"
                time.sleep(0.25)
            yield proc, port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
