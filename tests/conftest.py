"""Shared test set-up: one torch thread per test process (the suite runs as 2 xdist workers on 2 cores),
and the repository root as the working directory, so spec paths such as `specs/lenet5.yaml` resolve."""
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _repo_root_cwd(monkeypatch):
    monkeypatch.chdir(ROOT)
