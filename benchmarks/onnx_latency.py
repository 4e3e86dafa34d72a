"""Latency of torch eager, torch.compile and onnxruntime on five zoo networks at batch 1 and 32.

    .venv/bin/python benchmarks/onnx_latency.py [--threads N] [--seconds S] [--no-compile] [--out FILE]

Each network is exported (and verified) with `export.onnx_export.export_onnx`, then timed by
`export.bench.bench_network`: interleaved runs (eager, compiled, onnxruntime, rotating who goes first),
the same number of threads for every engine (torch.set_num_threads and onnxruntime's intra-op threads),
onnxruntime with all graph optimisations, median of the runs; max abs diff is each engine's largest
difference from eager. Target: onnxruntime at or below torch eager on every row.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name, spec, overrides, sizes of the non-batch symbols
NETWORKS = [
    ("MLP", "mlp", {}, {}),
    ("LeNet-5", "lenet5", {}, {}),
    ("ResNet-18", "resnet18", {}, {}),
    ("BERT, 4 layers (256 wide), T=32", "bert_base", {"layers": 4, "hidden": 256, "heads": 4,
                                                      "intermediate": 1024}, {"T": 32}),
    ("GPT, 4 layers (256 wide, vocab 8192), T=32", "gpt2", {"layers": 4, "d_model": 256, "heads": 4,
                                                           "vocab": 8192}, {"T": 32}),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="threads for every engine (default: torch's)")
    ap.add_argument("--seconds", type=float, default=3.0, help="timing budget per row (at least 10 runs)")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--only", help="comma-separated spec names (mlp,lenet5,resnet18,bert_base,gpt2)")
    ap.add_argument("--out", help="also write the table (markdown) here")
    args = ap.parse_args(argv)

    import onnxruntime
    import torch

    import builder
    from export import bench
    from export.onnx_export import export_onnx

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    batches = [int(b) for b in args.batches.split(",")]
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, name, overrides, sizes in NETWORKS:
            if args.only and name not in args.only.split(","):
                continue
            spec = builder.load(ROOT / "specs" / f"{name}.yaml", **overrides)
            torch.manual_seed(0)
            module = builder.build(spec)
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(module, path, spec=spec, sizes=sizes or None)
            for row in bench.bench_network(label, module, path, batches, sizes=sizes or None, threads=threads,
                                           use_compile=not args.no_compile, seconds=args.seconds,
                                           graph=spec.network().graph):
                rows.append(row)
                print(bench.format_table([row]).splitlines()[-1], flush=True)
    table = bench.format_table(rows)
    slower = [f"{r.name} @ {r.batch}" for r in rows if r.ort_ms > r.eager_ms]
    note = (f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {threads} threads, "
            f"{platform.machine()} CPU ({os.cpu_count()} cores), load average {load_before:.1f} -> "
            f"{os.getloadavg()[0]:.1f}; random weights; medians of interleaved runs.\n"
            + ("onnxruntime <= torch eager on every row." if not slower
               else "onnxruntime slower than torch eager on: " + ", ".join(slower)))
    print()
    print(table)
    print()
    print(note)
    if args.out:
        Path(args.out).write_text(table + "\n\n" + note + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
