"""Hostile files against a normal read of the same kind (issue 21): "refused within the time and memory of a
normal read", measured side by side in one process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/hostile_reads.py [--repeat 5]

For each reader: the median time and the peak Python allocation (tracemalloc) of reading a normal file,
then of each hostile one, and the ratios hostile / normal. A hostile read must end in a UserError.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


def measure(fn, repeat):
    times, peaks, outcome = [], [], None
    for _ in range(repeat):
        tracemalloc.start()
        t = time.perf_counter()
        try:
            fn()
            outcome = "read"
        except Exception as e:  # noqa: BLE001 -- reported as the outcome
            outcome = f"{type(e).__name__}: {str(e).splitlines()[0][:90]}"
        times.append(time.perf_counter() - t)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return statistics.median(times), statistics.median(peaks), outcome


def cases(tmp: Path):
    import builder
    import yaml
    from builder.data.files import read_csv
    from builder.data.sizes import load_sized, needs_data
    from builder.data.tokenizer import in_folder
    from builder.text.expr import evaluate
    from builder.training.runlog import read_resolved
    from builder.weights.loader import parse_map
    from builder.weights.patterns import Pattern
    from export.metadata import read_metadata

    def folder(name, files):
        d = tmp / name
        d.mkdir()
        for fname, text in files.items():
            (d / fname).write_text(text) if isinstance(text, str) else (d / fname).write_bytes(text)
        return d

    xor = ROOT / "specs" / "xor_mlp.yaml"
    spec = builder.load(xor)
    good_run = folder("run", {"resolved.yaml": yaml.safe_dump({**spec.resolved, "train": spec.train})})
    gpt2_map = ROOT / "specs" / "gpt2.hf-map.yaml"
    vocab = folder("vocab", {"vocab.json": json.dumps([chr(32 + i) for i in range(95)])})
    meta = {"builder.inputs": json.dumps([{"name": "x", "shape": ["B", 2], "dtype": "float32"}]),
            "builder.class_labels": json.dumps(["a", "b"])}
    rows = "\n".join(f"{i % 7},{['red', 'blue'][i % 2]},{i % 2}" for i in range(40_000))
    good_csv = folder("csv", {"t.csv": "a,colour,y\n" + rows + "\n"})
    text_csv = folder("csvtext", {"t.csv": "text,y\n" + "\n".join(f"sentence {i},{i % 2}" for i in range(40_000)) + "\n"})
    latin = folder("latin", {"t.csv": "name,y\ncaf\xe9,1\n".encode("latin-1")})
    fan = tmp / "fan"
    fan.mkdir()
    for i in range(9):
        (fan / f"f{i}.yaml").write_text(f"use: [f{i + 1}.yaml, f{i + 1}.yaml, f{i + 1}.yaml, f{i + 1}.yaml]\n")
    (fan / "f9.yaml").write_text("blocks: {}\n")
    (fan / "top.yaml").write_text(xor.read_text().replace("params:", "use: [f0.yaml]\nparams:"))
    huge = tmp / "huge.yaml"
    with open(huge, "wb") as f:
        f.write(xor.read_bytes())
        f.truncate(300_000_000)
    dollars = "# " + "${" * 50_000
    bomb_run = folder("bomb", {"resolved.yaml": BOMB})
    deep_run = folder("deep", {"resolved.yaml": "[" * 100_000})
    digits_run = folder("digits", {"resolved.yaml": "a: " + "9" * 5000})
    bomb_map = folder("mapbomb", {"m.yaml": BOMB}) / "m.yaml"
    deep_vocab = folder("vdeep", {"vocab.json": "[" * 100_000})

    return [
        ("resolved.yaml", lambda: read_resolved(good_run), [
            ("alias bomb", lambda: read_resolved(bomb_run)),
            ("100,000 [", lambda: read_resolved(deep_run)),
            ("5000-digit integer", lambda: read_resolved(digits_run))]),
        ("weight map", lambda: parse_map(gpt2_map), [
            ("alias bomb", lambda: parse_map(bomb_map)),
            ("six {x*} vs a 100-char key", lambda: Pattern("{a*}{b*}{c*}{d*}{e*}{f*}x").match("a" * 100)),
            ("ambiguous pattern vs a 1000-char key",
             lambda: Pattern("{a*}a{b*}a{c*}a{d*}a{e*}a{f*}x").match("a" * 1000))]),
        ("vocab.json", lambda: in_folder(vocab), [
            ("100,000 [", lambda: in_folder(deep_vocab))]),
        ("ONNX metadata", lambda: read_metadata(meta, "m.onnx"), [
            ("100,000 [ in builder.inputs", lambda: read_metadata({"builder.inputs": "[" * 100_000}, "m.onnx"))]),
        ("spec (use:)", lambda: builder.load(xor), [
            ("use: fan-out 4^9", lambda: builder.load(fan / "top.yaml"))]),
        ("spec text scan (needs_data)", lambda: needs_data(xor.read_text()), [
            ("100 KB of ${", lambda: needs_data(dollars))]),
        ("expression", lambda: evaluate("2 ** 10", {}), [
            ("'%2147483000d' % 1", lambda: evaluate("'%2147483000d' % 1", {}))]),
        ("spec (train path)", lambda: load_sized(xor, {}), [
            ("300 MB spec", lambda: load_sized(huge, {}))]),
        ("CSV 40,000 rows", lambda: read_csv(good_csv / "t.csv", target="y"), [
            ("40,000 distinct values", lambda: read_csv(text_csv / "t.csv", target="y")),
            ("latin-1", lambda: read_csv(latin / "t.csv", target="y"))]),
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'reader / attack':48} {'time':>9} {'x normal':>9} {'peak MB':>8} {'x normal':>9}  outcome")
        for name, normal, attacks in cases(Path(tmp)):
            t0, m0, out0 = measure(normal, args.repeat)
            print(f"{name + ' (normal)':48} {t0 * 1000:7.2f}ms {'':>9} {m0 / 1e6:8.2f} {'':>9}  {out0}")
            for label, fn in attacks:
                t, m, out = measure(fn, args.repeat)
                print(f"{'  ' + label:48} {t * 1000:7.2f}ms {t / t0:8.2f}x {m / 1e6:8.2f} {m / max(m0, 1):8.2f}x  {out}")


if __name__ == "__main__":
    main()
