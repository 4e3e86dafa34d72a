"""A long fuzzing run over mutated zoo specs (issue 7): prints how many cases ran and how many failed.

    .venv/bin/python benchmarks/fuzz.py --cases 20000 --seed 1 [--compile] [--show 5]

Every case takes a small valid spec (specs/, specs/examples/, tests/fuzz_seeds/), damages it (tree
mutations of the parsed document, or raw-text damage, or a bad `--set`), and loads it. The only
acceptable outcomes are a clean SpecError/UserError or a valid graph. With --compile, every accepted
spec is also compiled and run forward on a random batch: an accepted spec whose module then fails is a
shape-inference bug. The same mutation engine drives the hypothesis tests in tests/test_fuzz_specs.py.
Exit code 1 when any case failed.
"""
from __future__ import annotations

import argparse
import copy
import signal
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import spec_mutations as M  # noqa: E402


def make_case(seeds, ch, max_mutations: int = 3):
    """(seed path, text, overrides, description) of one damaged spec."""
    path, text, doc = ch.choice(seeds)
    kind = ch.choice(("tree", "tree", "tree", "text", "set"))
    overrides = None
    if kind == "tree":
        donors = [d for _, _, d in seeds]
        mutated, applied = M.mutate_tree(copy.deepcopy(doc), ch, ch.integer(1, max_mutations), donors)
        text = M.dump(mutated)
    elif kind == "text":
        text, applied = M.mutate_text(text, ch, ch.integer(1, max_mutations))
    else:
        params = list(doc.get("params") or {}) if isinstance(doc, dict) else []
        key = ch.choice(params + ["nope", "train.epochs", "x"]) if params else "nope"
        value = M.random_value(ch, M.names_in(doc))
        overrides, applied = {key: value}, [f"--set {key}={value!r}"]
    return path, text, overrides, f"{path.name}: {kind}: {'; '.join(applied)}"


def run_case(path, text, overrides, compile_valid: bool) -> str:
    outcome = M.check_outcome(text, path.parent, overrides)
    if outcome == "ok" and compile_valid and overrides is None:
        M.check_runs(text, path.parent)
    return outcome


class CaseTimeout(BaseException):  # not an Exception: no `except Exception` in the builder may swallow it
    pass


def _alarm(signum, frame):
    raise CaseTimeout("case took longer than the per-case limit")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compile", action="store_true", help="also build and run every accepted spec")
    ap.add_argument("--show", type=int, default=5, help="print this many failing cases in full")
    ap.add_argument("--max-mutations", type=int, default=3, help="mutations per case: 1 to this many")
    ap.add_argument("--save", type=Path, help="write failing specs into this folder")
    ap.add_argument("--case-timeout", type=float, default=10.0,
                    help="seconds one case may take: hostile specs must fail fast (a slower case fails)")
    args = ap.parse_args(argv)

    import warnings
    warnings.simplefilter("ignore")  # torch's UserWarnings about odd but legal arguments
    signal.signal(signal.SIGALRM, _alarm)
    seeds = M.seed_specs()
    print(f"{len(seeds)} seed specs: {', '.join(p.name for p, _, _ in seeds)}")
    outcomes: Counter = Counter()
    causes: Counter = Counter()
    slowest = (0.0, "")
    start = time.perf_counter()
    for i in range(args.cases):
        path, text, overrides, desc = make_case(seeds, M.RandomChooser(args.seed * 1_000_003 + i), args.max_mutations)
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, args.case_timeout)
        try:
            try:
                outcome = run_case(path, text, overrides, args.compile)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            outcomes[outcome] += 1
        except (M.FuzzFailure, CaseTimeout) as e:
            outcomes["FAILED"] += 1
            cause = e.__cause__ or e
            tb = traceback.extract_tb(cause.__traceback__)
            where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
            causes[(str(e).split(":")[0], where)] += 1
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                (args.save / f"case_{i}.yaml").write_text(text, encoding="utf-8")
            if sum(causes.values()) <= args.show:
                frames = "".join(traceback.format_list(tb[-3:]))
                print(f"\n--- case {i} failed ({desc}): {str(e)[:300]}\n{frames}")
        took = time.perf_counter() - t0
        if took > slowest[0]:
            slowest = (took, f"case {i} ({desc})")
    elapsed = time.perf_counter() - start
    print(f"\n{args.cases} cases in {elapsed:.1f}s ({args.cases / elapsed:.0f}/s): "
          f"{outcomes['ok']} accepted, {outcomes['error']} rejected cleanly, {outcomes['FAILED']} failed")
    print(f"slowest case: {slowest[0]:.2f}s, {slowest[1][:200]}")
    for (kind, where), n in causes.most_common(20):
        print(f"  {n:5d}  {kind}  at {where}")
    return 1 if outcomes["FAILED"] else 0


if __name__ == "__main__":
    sys.exit(main())
