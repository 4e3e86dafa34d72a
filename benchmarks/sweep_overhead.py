"""What `build sweep` costs on top of training: time per trial against plain `build train` runs of the
same config, and the throughput of `--jobs 2` against `--jobs 1`.

The spec is specs/mlp_digits.yaml with a space over the learning rate only (a trial's work does not
depend on the value drawn), `--epochs`-long runs, `--quiet`. Per round, side by side:

    plain     `build train` processes, one per trial (start-up, load, train, files), `--trials` of them
    sweep     one `build sweep --trials N --jobs 1` (driver, one worker process, N trials, results and
              plots), wall time / N
    in trial  the trials' own durations (trials.csv: load + train + telling the study) against
              `builder.train` of the same config inside one process: the per-trial overhead itself

and then `--jobs 2` against `--jobs 1` (trials per second, same N). Runs are interleaved and medians
reported. Target (issue 15): sweep <= 1.05x plain per trial.
Usage: python benchmarks/sweep_overhead.py [--rounds 3] [--trials 4] [--epochs 20]
"""
from __future__ import annotations

import argparse
import csv
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "mlp_digits.yaml"


def bench_spec(folder: Path, epochs: int) -> Path:
    """mlp_digits with a learning-rate-only space and no early stopping (every run trains all epochs)."""
    from builder.text.yaml_loader import load_yaml, to_plain
    doc = to_plain(load_yaml(SPEC.read_text(), str(SPEC)))
    doc["train"]["epochs"] = epochs
    doc["train"].pop("early_stopping", None)
    doc["sweep"] = {"metric": "val.accuracy", "sampler": "random", "pruner": "none", "seed": 0,
                    "space": {"train.optimizer.lr": {"float": [0.01, 0.2], "log": True}}}
    path = folder / "mlp_digits_bench.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def build(*args, cwd):
    """(wall, CPU) seconds of one `build` command, its worker processes included."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0, c0 = time.perf_counter(), children_cpu()
    subprocess.run([sys.executable, "-m", "builder.commands.cli", *map(str, args)], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0, children_cpu() - c0


def in_process_train(spec: Path, folder: Path) -> float:
    """builder.train of the bench config in a fresh process (load + train + files), seconds."""
    code = ("import sys, time, builder\n"
            "t = time.perf_counter()\n"
            "builder.train(builder.load(sys.argv[1]), run_dir=sys.argv[2], quiet=True, overwrite=True)\n"
            "print(time.perf_counter() - t)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code, str(spec), str(folder / "inproc")], cwd=folder, env=env,
                         check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def trial_durations(sweep_dir: Path) -> list:
    with open(sweep_dir / "trials.csv", newline="") as f:
        return [float(r["duration"]) for r in csv.DictReader(f) if r["state"] == "COMPLETE"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    n = args.trials
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = bench_spec(tmp, args.epochs)
        ratios, cpu_ratios, plain_s, sweep_s, inside, jobs_ratio, tput = [], [], [], [], [], [], {1: [], 2: []}
        for r in range(args.rounds):
            plain = [build("train", spec, "--quiet", "--overwrite", "--run-dir", tmp / f"plain{i}", cwd=tmp)
                     for i in range(n)]
            plain_wall, plain_cpu = sum(w for w, _ in plain) / n, sum(c for _, c in plain) / n
            one_wall, one_cpu = (x / n for x in build("sweep", spec, "--trials", n, "--jobs", 1, "--quiet",
                                                      "--sweep-dir", tmp / f"s1-{r}", cwd=tmp))
            two_wall = build("sweep", spec, "--trials", n, "--jobs", 2, "--quiet", "--sweep-dir", tmp / f"s2-{r}",
                             cwd=tmp)[0] / n
            trainer = in_process_train(spec, tmp)
            trial = statistics.median(trial_durations(tmp / f"s1-{r}"))
            plain_s.append(plain_wall), sweep_s.append(one_wall)
            ratios.append(one_wall / plain_wall), cpu_ratios.append(one_cpu / plain_cpu)
            inside.append(trial / trainer)
            tput[1].append(1 / one_wall), tput[2].append(1 / two_wall), jobs_ratio.append(one_wall / two_wall)
            print(f"  round {r + 1}: plain {plain_wall:.2f} s/trial ({plain_cpu:.2f} s CPU), sweep {one_wall:.2f} "
                  f"s/trial ({one_cpu:.2f} s CPU), in trial {trial:.2f} s vs builder.train {trainer:.2f} s, "
                  f"--jobs 2 {two_wall:.2f} s/trial", flush=True)
    med = statistics.median
    load = os.getloadavg()[0]
    print(f"mlp_digits, {args.epochs} epochs per run, {n} trials per sweep, {args.rounds} interleaved rounds, "
          f"{os.cpu_count()} cores (load average {load:.1f})")
    print(f"  sweep --jobs 1 per trial vs plain build train   {med(ratios):.2f}x wall, {med(cpu_ratios):.2f}x CPU  "
          f"({med(sweep_s):.2f} s vs {med(plain_s):.2f} s wall)   target <= 1.05x")
    print(f"  a trial inside the sweep vs builder.train      {med(inside):.2f}x")
    print(f"  --jobs 2 vs --jobs 1 throughput                {med(jobs_ratio):.2f}x  "
          f"({med(tput[2]):.3f} vs {med(tput[1]):.3f} trials/s)")


if __name__ == "__main__":
    main()
