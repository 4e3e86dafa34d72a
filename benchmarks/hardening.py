"""Attack the builder and measure what held (issue 7): the figures of docs/HARDENING.md.

    .venv/bin/python benchmarks/hardening.py [--skip-tmpfs] [--fuzz-cases 2000]

Each spec attack runs in fresh child processes that first load a small valid spec (so every import is
done), then the hostile one: the time is that load alone (untraced), the memory the peak of Python
allocations during it (tracemalloc, in a second child). Then: malicious pickles, damaged data files, two trainings racing for one run folder, a
real full disk (a 512 KB tmpfs, when this runs as root and may mount), and a short fuzz run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))

SPEC_PROBE = r"""
import json, sys, time, tracemalloc
import builder
from builder.core.errors import UserError
def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
builder.load("specs/xor_mlp.yaml")  # lazy imports (torch) happen here, not in the measurement
if sys.argv[2] == "memory":
    tracemalloc.start()
base = rss_mb()
t = time.perf_counter()
try:
    builder.load(sys.argv[1], safe=True)
    outcome = "ACCEPTED"
except UserError as e:
    outcome = str(e).splitlines()[0]
except BaseException as e:
    outcome = f"CRASH {type(e).__name__}: {e}"
ms = (time.perf_counter() - t) * 1000
peak = tracemalloc.get_traced_memory()[1] / 2**20 if sys.argv[2] == "memory" else 0.0
print(json.dumps({"ms": ms, "peak_mb": peak, "outcome": outcome}))
"""

SPEC_ATTACKS = [
    ("billion laughs (9 levels of 9 aliases)", "tests/bad_specs/billion_laughs.yaml"),
    ("nested repeat bomb", "tests/bad_specs/nested_repeat_bomb.yaml"),
    ("repeat: 1000000", "tests/bad_specs/absurd_repeat.yaml"),
    ("`${10**10**10}`", "tests/bad_specs/expr_power_tower.yaml"),
    ("`${'ab' * 1000000000}`", "tests/bad_specs/expr_string_bomb.yaml"),
    ("expression list bomb", "tests/bad_specs/expr_list_bomb.yaml"),
    ("string-doubling params", "tests/bad_specs/param_string_doubling.yaml"),
    ("`__import__` in an expression", "tests/bad_specs/expr_import.yaml"),
    ("`!!python/object/apply` tag", "tests/bad_specs/python_object_tag.yaml"),
    ("`!!python/name` tag", "tests/bad_specs/python_name_tag.yaml"),
    ("custom tag `!include`", "tests/bad_specs/custom_tag.yaml"),
    ("duplicate key", "tests/bad_specs/duplicate_top_key.yaml"),
    ("nesting 70 levels deep", "tests/bad_specs/deep_nesting.yaml"),
    ("absurd activation size", "tests/bad_specs/absurd_activation_size.yaml"),
    ("out_features 10^12", "tests/bad_specs/absurd_out_features.yaml"),
]


def spec_attack(path) -> dict:
    """Time (one child, no tracing) and peak Python memory (another child, tracemalloc) of loading `path`."""
    result = {}
    for mode in ("time", "memory"):
        out = subprocess.run([PY, "-c", SPEC_PROBE, str(path), mode], capture_output=True, text=True, env=ENV,
                             cwd=ROOT, timeout=300)
        try:
            r = json.loads(out.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            return {"ms": float("nan"), "peak_mb": float("nan"),
                    "outcome": f"CRASH rc={out.returncode} {out.stderr[-300:]}"}
        result.update({"ms": r["ms"], "outcome": r["outcome"]} if mode == "time" else {"peak_mb": r["peak_mb"]})
    return result


def big_file_attack(tmp: Path) -> tuple[str, Path]:
    path = tmp / "huge.yaml"
    with open(path, "w") as f:
        f.write("spec: 1\ninputs:\n  x: {shape: [B, 2]}\nnodes:\n  h: {op: Linear, out_features: 2}\n")
        f.write("description: '" + "x" * (64 * 2**20) + "'\n")
    return "a 64 MB spec file", path


def many_nodes_attack(tmp: Path) -> tuple[str, Path]:
    path = tmp / "nodes.yaml"
    lines = ["spec: 1", "inputs:", "  x: {shape: [B, 2]}", "nodes:"]
    lines += [f"  n{i}: {{op: ReLU}}" for i in range(30_000)]
    path.write_text("\n".join(lines) + "\n")
    return "30,000 nodes", path


def cli(*argv, **kw):
    t = time.perf_counter()
    out = subprocess.run([PY, "-m", "builder.commands.cli", *argv], capture_output=True, text=True, env=ENV, cwd=ROOT,
                         timeout=600, **kw)
    return out, time.perf_counter() - t


def last_line(text):
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def pickle_attack(tmp: Path) -> list[tuple[str, str]]:
    import torch

    marker = tmp / "PWNED"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp / "evil.pt"
    torch.save({"networks": {"model": {"head.weight": Payload()}}}, evil)
    rows = []
    for what, argv in (("--weights (predict)", ["predict", "specs/xor_mlp.yaml", "--weights", str(evil), "--input", "x.npy"]),
                       ("convert-weights", ["convert-weights", "specs/xor_mlp.yaml", "--from", str(evil), "-o",
                                            str(tmp / "c.pt")])):
        out, _ = cli(*argv)
        rows.append((f"malicious pickle via {what}",
                     f"exit {out.returncode}, payload ran: {marker.exists()}; `{last_line(out.stderr)[:150]}...`"))
    return rows


def race_attack(tmp: Path) -> str:
    spec = tmp / "race.yaml"
    spec.write_text((ROOT / "specs/mlp_digits.yaml").read_text())
    run_dir = tmp / "race"
    procs = [subprocess.Popen([PY, "-m", "builder.commands.cli", "train", str(spec), "--run-dir", str(run_dir), "--quiet",
                               "--device", "cpu", "--epochs", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=ENV, cwd=ROOT) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(r[0] for r in results)
    loser = next((last_line(err) for code, err in results if code == 2), "")
    return f"exit codes {codes}; the loser says `{loser}`"


def tmpfs_attack(tmp: Path) -> list[tuple[str, str]]:
    mnt = tmp / "full"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True).returncode:
        return [("real full disk (512 KB tmpfs)", "not measured: cannot mount here")]
    rows = []
    try:
        spec = tmp / "wide.yaml"
        spec.write_text("spec: 1\nname: wide\ninputs:\n  x: {shape: [B, 2]}\nnodes:\n  h: {op: Linear, out_features: 32768}\n"
                        "  head: {op: Linear, out_features: 2}\ntrain:\n  data: {source: xor, n: 64}\n"
                        "  loss: cross_entropy\n  epochs: 2\n")
        out, _ = cli("train", str(spec), "--run-dir", str(mnt / "run"), "--quiet", "--device", "cpu")
        left = sorted(p.name for p in (mnt / "run").iterdir()) if (mnt / "run").exists() else []
        rows.append(("`build train` into a full 512 KB tmpfs",
                     f"exit {out.returncode}, `{last_line(out.stderr)}`; left: {', '.join(left) or 'nothing'}"))
        shutil.rmtree(mnt / "run", ignore_errors=True)
        (mnt / "fill").write_bytes(b"\0" * (512 - 8) * 1024)  # 8 KB left for the model
        out, _ = cli("export", "specs/mlp_digits.yaml", "--random", "-o", str(mnt / "m.onnx"))
        left = sorted(p.name for p in mnt.iterdir())
        rows.append(("`build export` into a full tmpfs",
                     f"exit {out.returncode}, `{last_line(out.stderr)}`; left: {', '.join(left)}"))
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-tmpfs", action="store_true")
    ap.add_argument("--fuzz-cases", type=int, default=2000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hardening-"))
    rows = []
    try:
        attacks = [(n, ROOT / p) for n, p in SPEC_ATTACKS] + [big_file_attack(tmp), many_nodes_attack(tmp)]
        for name, path in attacks:
            r = spec_attack(path)
            rows.append((name, f"{r['outcome'][:140]} | {r['ms']:.1f} ms | {r['peak_mb']:.1f} MB"))
            print(rows[-1], flush=True)
        import numpy as np
        np.save(ROOT / "x.npy", np.ones((2, 2), np.float32))
        try:
            rows += pickle_attack(tmp)
        finally:
            (ROOT / "x.npy").unlink(missing_ok=True)
        print(rows[-1], flush=True)
        rows.append(("two `build train` into one run folder at once", race_attack(tmp)))
        print(rows[-1], flush=True)
        if not args.skip_tmpfs:
            rows += tmpfs_attack(tmp)
            print(rows[-1], flush=True)
        if args.fuzz_cases:
            out = subprocess.run([PY, "benchmarks/fuzz.py", "--cases", str(args.fuzz_cases), "--seed", "7",
                                  "--show", "0"], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=3600)
            lines = [ln.strip() for ln in out.stdout.splitlines() if " cases in " in ln or ln.startswith("slowest")]
            rows.append((f"fuzz: mutated zoo specs (benchmarks/fuzz.py --cases {args.fuzz_cases} --seed 7)",
                         "; ".join(lines) + f" (exit {out.returncode})"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n| attack | outcome | time | peak memory |\n|---|---|---|---|")
    for name, outcome in rows:
        print(f"| {name} | {outcome} |")


if __name__ == "__main__":
    main()
