"""Latency of one network under torch eager, torch.compile and onnxruntime (all graph optimisations on).

Runs are interleaved (eager, compiled, onnxruntime, eager, ...) so that a machine slowing down or
speeding up affects every engine alike; all use the same number of threads; the median is reported,
with the largest absolute difference of each engine's outputs from eager's.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import runtime, signature


@dataclass
class BenchRow:
    name: str
    batch: int
    sizes: dict
    eager_ms: float
    compile_ms: float | None
    ort_ms: float
    ort_diff: float
    compile_diff: float | None
    runs: int

    @property
    def ratio(self) -> float:
        return self.ort_ms / self.eager_ms if self.eager_ms else float("nan")


def _outputs(out) -> list[np.ndarray]:
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().cpu().numpy() for o in outs]


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))) if x.size else 0.0
               for x, y in zip(a, b))


def bench_network(name: str, module: torch.nn.Module, onnx_path, batches=(1, 32), sizes: dict | None = None,
                  threads: int | None = None, use_compile: bool = True, min_runs: int = 10,
                  max_runs: int = 200, seconds: float = 2.0, graph=None) -> list[BenchRow]:
    """`graph`: the network's graph, for the example sizes its `dims:` declare (else the defaults)."""
    module = module.eval()
    if threads:
        torch.set_num_threads(int(threads))
    sig = signature.signature_of(module, graph, sizes=sizes)
    batch_sym = sig.batch_symbol()
    sess = runtime.session(onnx_path, "cpu", threads or torch.get_num_threads())
    names = [i.name for i in sess.get_inputs()]
    compiled = torch.compile(module, dynamic=False) if use_compile else None
    rows = []
    for batch in batches:
        run_sizes = dict(sig.sizes)
        if batch_sym:
            run_sizes[batch_sym] = int(batch)
        inputs = signature.example_inputs(sig, run_sizes, seed=batch)
        feed = {n: t.numpy() for n, t in zip(names, inputs)}
        engines = {"eager": lambda: module(*inputs), "ort": lambda: sess.run(None, feed)}
        if compiled is not None:
            engines["compile"] = lambda: compiled(*inputs)
        with torch.inference_mode():
            ref = _outputs(module(*inputs))
            diffs = {"ort": _max_diff(ref, sess.run(None, feed))}
            if compiled is not None:
                diffs["compile"] = _max_diff(ref, _outputs(compiled(*inputs)))  # compiles here
            times, runs = _interleaved(engines, min_runs, max_runs, seconds)
        rows.append(BenchRow(name, int(batch), run_sizes, times["eager"], times.get("compile"), times["ort"],
                             diffs["ort"], diffs.get("compile"), runs))
    return rows


def _interleaved(engines: dict, min_runs: int, max_runs: int, seconds: float) -> tuple[dict[str, float], int]:
    for fn in engines.values():  # warm-up
        for _ in range(3):
            fn()
    samples = {k: [] for k in engines}
    start = time.perf_counter()
    order = list(engines)
    runs = 0
    while runs < max_runs and (runs < min_runs or time.perf_counter() - start < seconds):
        for k in order:
            t0 = time.perf_counter()
            engines[k]()
            samples[k].append(time.perf_counter() - t0)
        order = order[1:] + order[:1]  # rotate who goes first
        runs += 1
    return {k: statistics.median(v) * 1e3 for k, v in samples.items()}, runs


def format_table(rows: list[BenchRow], threads: int | None = None) -> str:
    head = ("| network | batch | torch eager ms | torch.compile ms | onnxruntime ms | ORT / eager | "
            "max abs diff ORT | max abs diff compile |")
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        comp = f"{r.compile_ms:.3f}" if r.compile_ms is not None else "-"
        cdiff = f"{r.compile_diff:.1e}" if r.compile_diff is not None else "-"
        lines.append(f"| {r.name} | {r.batch} | {r.eager_ms:.3f} | {comp} | {r.ort_ms:.3f} | {r.ratio:.2f} | "
                     f"{r.ort_diff:.1e} | {cdiff} |")
    return "\n".join(lines)
