"""A longer run of the shape property checks (issue 11): every op of the registry and random chains of
shape-changing ops, inferred symbolic shapes evaluated at random sizes against the real modules.

    .venv/bin/python benchmarks/shape_fuzz.py --per-op 300 --chains 3000 --seed 1

Prints, per op, how many random calls were valid and checked, then the chains; the first failing case
in full. Exit code 1 when any case failed. tests/test_shape_properties.py runs the same checks, fewer.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import shape_cases as C  # noqa: E402


def run(check, n: int, rng_seed: int) -> tuple[int, int, str]:
    """(cases run, cases valid, first failure or '')."""
    counts = [0, 0]

    @seed(rng_seed)
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def body(data):
        counts[0] += 1
        counts[1] += bool(check(data.draw))

    try:
        body()
    except Exception as e:  # hypothesis re-raises the shrunk failing case
        return counts[0], counts[1], f"{type(e).__name__}: {e}"
    return counts[0], counts[1], ""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-op", type=int, default=200)
    p.add_argument("--chains", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message="Using padding='same'")
    failed, total, start = 0, 0, time.perf_counter()
    for name in C.registry_ops():
        if name not in C.OP_CASES:
            print(f"{name:22s} NO CASE GENERATOR")
            failed += 1
            continue
        ran, valid, err = run(lambda draw, name=name: C.check_op_case(draw, name), args.per_op, args.seed)
        total += ran
        print(f"{name:22s} {valid:5d} of {ran:5d} valid and equal to torch" + (f"  FAILED {err}" if err else ""))
        failed += bool(err)
    ran, valid, err = run(lambda draw: C.check_chain(draw, C.chain_spec(draw)), args.chains, args.seed)
    total += ran
    print(f"{'chains of 2-6 ops':22s} {valid:5d} of {ran:5d} valid and equal to torch" + (f"  FAILED {err}" if err else ""))
    failed += bool(err)
    print(f"{total} cases in {time.perf_counter() - start:.1f} s, {failed} failing group(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
