"""Deployment numbers in one run: `build serve` under load vs onnxruntime in-process, and the int8 / fp16
files vs fp32 (latency and size) for the zoo's MLP, LeNet-5, ResNet-18 and BERT-4 rows.

    .venv/bin/python benchmarks/serve_load.py                      # 4 clients x 50 requests, every model
    .venv/bin/python benchmarks/serve_load.py --clients 8 --requests 200 --only lenet5

Serving: `build serve` is started as a subprocess on 127.0.0.1 (a free port) with the LeNet-5 file;
N client threads (tritonclient[http], binary tensors) send M one-sample requests each; the same N x M
calls to one onnxruntime session in-process are the floor. Throughput (requests/s) and p50/p99 latency
of each, and their ratios. Quantisation: each model exported with random weights (seed 0), then
`--quantize dynamic`, `static` (calibrated on 64 random example inputs: latency and size only; the accuracy
guard of `build export` needs the spec's trained data) and `fp16`; the median of interleaved batch-1 runs
(one thread each) and the file size, as ratios to fp32. Everything is bounded: the server gets 120 s to
start, each request 30 s, and it is stopped at the end.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

# (label, spec, overrides, sizes for the example inputs)
MODELS = [
    ("MLP", "mlp", {}, {}),
    ("LeNet-5", "lenet5", {}, {}),
    ("ResNet-18", "resnet18", {}, {}),
    ("BERT-4", "bert_base", {"hidden": 128, "layers": 4, "heads": 4, "intermediate": 512, "vocab": 1000,
                             "max_positions": 128}, {"T": 32}),
]
MODES = ("dynamic", "static", "fp16")


def export_fp32(spec_name, overrides, sizes, folder: Path):
    import torch

    import builder
    from export.onnx_export import export_onnx
    spec = builder.load(ROOT / "specs" / f"{spec_name}.yaml", **overrides)
    torch.manual_seed(0)
    module = builder.build(spec).eval()
    path = folder / f"{spec_name}.onnx"
    export_onnx(module, path, spec=spec, sizes=sizes or None)
    return module, spec, path


def example_feed(module, spec, sizes, batch, seed):
    from export import signature
    sig = signature.signature_of(module, spec.network(None).graph, sizes or None)
    run_sizes = dict(sig.sizes)
    if sig.batch_symbol():
        run_sizes[sig.batch_symbol()] = batch
    return {i.name: t.numpy() for i, t in zip(sig.inputs, signature.example_inputs(sig, run_sizes, seed=seed))}


def interleaved_ms(sessions: dict, feed: dict, seconds: float, min_runs: int = 10) -> dict:
    for s in sessions.values():
        for _ in range(3):
            s.run(None, feed)
    times = {k: [] for k in sessions}
    order, start, runs = list(sessions), time.perf_counter(), 0
    while runs < min_runs or time.perf_counter() - start < seconds:
        for k in order:
            t0 = time.perf_counter()
            sessions[k].run(None, feed)
            times[k].append(time.perf_counter() - t0)
        order = order[1:] + order[:1]
        runs += 1
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def quantisation_rows(models, folder: Path, seconds: float) -> list[str]:
    from export import quantize, runtime
    lines = ["| model | fp32 MB | " + " | ".join(f"{m} MB (x fp32)" for m in MODES) + " | fp32 ms | "
             + " | ".join(f"{m} ms (x fp32)" for m in MODES) + " |",
             "| --- | ---: |" + " ---: |" * (2 * len(MODES) + 1)]
    print("\n".join(lines), flush=True)
    for label, spec_name, overrides, sizes in models:
        module, spec, fp32 = export_fp32(spec_name, overrides, sizes, folder)
        calibration = {k: np.concatenate([example_feed(module, spec, sizes, 16, seed)[k] for seed in range(4)])
                       for k in example_feed(module, spec, sizes, 1, 0)}
        files, problems = {"fp32": fp32}, []
        for mode in MODES:
            try:
                files[mode] = quantize.quantize_file(fp32, folder / f"{spec_name}.{mode}.onnx", mode, calibration)
            except Exception as e:  # a row saying why, not a crash
                problems.append(f"{mode}: {str(e)[:100]}")
        sessions = {k: runtime.session(p, "cpu", 1) for k, p in files.items()}
        ms = interleaved_ms(sessions, example_feed(module, spec, sizes, 1, 99), seconds)
        size = {k: quantize.size_of(p) / 1e6 for k, p in files.items()}
        cells = [f"{size[m]:.2f} ({size[m] / size['fp32']:.2f}x)" if m in size else "failed" for m in MODES]
        cells += [f"{ms['fp32']:.3f}"] + [f"{ms[m]:.3f} ({ms[m] / ms['fp32']:.2f}x)" if m in ms else "failed"
                                          for m in MODES]
        line = f"| {label} (`{spec_name}`) | {size['fp32']:.2f} | " + " | ".join(cells) + " |"
        if problems:
            line += " " + "; ".join(problems)
        print(line, flush=True)
        lines.append(line)
    return lines


def percentile(values, q):
    return float(np.percentile(np.asarray(values) * 1e3, q))


def load(fn, clients: int, requests: int) -> tuple[float, list[float]]:
    """(wall seconds, per-call latencies) of `clients` threads calling fn(client, i) `requests` times."""
    latencies, lock, errors = [], threading.Lock(), []

    def worker(c):
        mine = []
        try:
            for i in range(requests):
                t0 = time.perf_counter()
                fn(c, i)
                mine.append(time.perf_counter() - t0)
        except Exception as e:  # reported after the run
            errors.append(e)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    if errors:
        raise errors[0]
    return time.perf_counter() - t0, latencies


def serving_rows(folder: Path, clients: int, requests: int, max_delay_ms: float) -> list[str]:
    import tritonclient.http as httpclient

    from serving import serving

    from export import runtime
    module, spec, path = export_fp32("lenet5", {}, {}, folder)
    xs = example_feed(module, spec, {}, clients * requests, 5)["x"]
    # started, waited for and stopped as the tests do (tests/serving.py)
    with serving(path, folder / "serve.log", "--threads", "1", "--max-batch", "32", "--max-delay-ms",
                 str(max_delay_ms)) as (_, port):
        probe = httpclient.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=30)
        name = probe.get_model_metadata("lenet5")["name"]
        local = threading.local()  # tritonclient runs on gevent: one client per thread, made in that thread

        def served(c, i):
            if not hasattr(local, "client"):
                local.client = httpclient.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=30)
            x = xs[c * requests + i:c * requests + i + 1]
            t = httpclient.InferInput("x", list(x.shape), "FP32")
            t.set_data_from_numpy(x)
            local.client.infer(name, [t])

        load(served, clients, 2)  # warm-up: every thread's connection
        wall_s, lat_s = load(served, clients, requests)
        stats = probe.get_inference_statistics(name)["model_stats"][0]
    session = runtime.session(path, "cpu", 1)
    wall_o, lat_o = load(lambda c, i: session.run(None, {"x": xs[c * requests + i:c * requests + i + 1]}),
                         clients, requests)
    n = clients * requests
    rows = [("build serve (HTTP, tritonclient)", wall_s, lat_s), ("onnxruntime in-process", wall_o, lat_o)]
    lines = ["| LeNet-5, batch-1 requests | requests/s | p50 ms | p99 ms |", "| --- | ---: | ---: | ---: |"]
    for label, wall, lat in rows:
        lines.append(f"| {label} | {n / wall:.0f} | {percentile(lat, 50):.2f} | {percentile(lat, 99):.2f} |")
    lines.append(f"ratios serve / in-process: throughput {wall_o / wall_s:.2f}x, p50 "
                 f"{percentile(lat_s, 50) / percentile(lat_o, 50):.1f}x, p99 "
                 f"{percentile(lat_s, 99) / percentile(lat_o, 99):.1f}x; the server ran {stats['execution_count']} "
                 f"model executions for its {stats['inference_count']} requests (largest batch "
                 f"{stats['largest_batch']})")
    for line in lines:
        print(line, flush=True)
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=50, help="requests per client")
    ap.add_argument("--max-delay-ms", type=float, default=2.0, help="build serve's batching window")
    ap.add_argument("--seconds", type=float, default=1.0, help="latency budget per model (interleaved runs)")
    ap.add_argument("--only", help="comma-separated spec names for the quantisation table")
    ap.add_argument("--no-serve", action="store_true", help="only the quantisation table")
    args = ap.parse_args(argv)

    import onnxruntime
    import torch
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {platform.machine()} "
          f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})", flush=True)
    models = [m for m in MODELS if not args.only or m[1] in args.only.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_serve:
            serving_rows(Path(tmp), args.clients, args.requests, args.max_delay_ms)
        quantisation_rows(models, Path(tmp), args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
