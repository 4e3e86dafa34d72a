"""`build check` start-up: wall time of the whole command, and what `-X importtime` says the train checks
import, for two source trees side by side (runs interleaved, medians reported).

Target (issue 10): the typed train config must not make `build check` slower than the old trainer import.
Usage: python benchmarks/check_startup.py OLD_TREE NEW_TREE [SPEC]   (trees: folders holding builder/)
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time

RUNS = 5
TRAIN_MODULES = re.compile(r"^builder\.(trainer|training\.checks)$")


def run(tree, spec, importtime=False):
    env = {**os.environ, "PYTHONPATH": tree}
    argv = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "builder.commands.cli", "check", spec]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, proc.stderr


def train_import_ms(stderr):
    """Cumulative import time of the module `build check` imports for the train section."""
    for line in stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and TRAIN_MODULES.match(parts[2]):
            return int(parts[1]) / 1000
    return 0.0


def main():
    old, new = sys.argv[1], sys.argv[2]
    spec = sys.argv[3] if len(sys.argv) > 3 else "specs/mlp_digits.yaml"
    wall = {old: [], new: []}
    imports = {old: [], new: []}
    run(old, spec), run(new, spec)  # warm the file cache
    for _ in range(RUNS):
        for tree in (old, new):
            wall[tree].append(run(tree, spec)[0])
            imports[tree].append(train_import_ms(run(tree, spec, importtime=True)[1]))
    for label, tree in (("old", old), ("new", new)):
        print(f"{label}: wall median {statistics.median(wall[tree]):.3f} s, "
              f"train-check import median {statistics.median(imports[tree]):.1f} ms  ({tree})")
    print(f"ratio new/old wall: {statistics.median(wall[new]) / statistics.median(wall[old]):.2f}, "
          f"train-check import: {statistics.median(imports[new]) / max(statistics.median(imports[old]), 1e-9):.2f}")


if __name__ == "__main__":
    main()
