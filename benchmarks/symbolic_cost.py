"""What symbolic dims cost `build check`: the same spec with symbolic H, W and with fixed sizes, side by
side in one run (medians of interleaved loads). Usage: python benchmarks/symbolic_cost.py [--runs 7]
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import builder  # noqa: E402

SPECS = (("resnet50", 224), ("unet", 256))


def fixed_variant(text: str, size: int) -> str:
    """The spec with H and W written as numbers and no `dims:` section."""
    text = re.sub(r"^dims:.*?\n(?=\S)", "", text, flags=re.S | re.M)
    return re.sub(r"\bH, W\]", f"{size}, {size}]", text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args(argv)
    for name, size in SPECS:
        symbolic = (ROOT / "specs" / f"{name}.yaml").read_text()
        fixed = fixed_variant(symbolic, size)
        assert "dims:" not in fixed and fixed != symbolic
        times = {"symbolic": [], "fixed": []}
        for _ in range(args.runs):
            for kind, text in (("symbolic", symbolic), ("fixed", fixed)):
                t0 = time.perf_counter()
                builder.load(text)
                times[kind].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{name:10s} check with symbolic H, W {med['symbolic'] * 1e3:6.0f} ms, fixed {size}x{size} "
              f"{med['fixed'] * 1e3:6.0f} ms: {med['symbolic'] / med['fixed']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
