"""How long `build viz` takes and how big its pictures are (issues 6 and 16).

    .venv/bin/python benchmarks/viz_time.py [--runs 3] [--quick]

Targets: the default backward PNGs of GPT-2 small and ResNet-50 written in under 20 s each, measured as
the whole `build viz SPEC --view backward -o X.png` command (interpreter start and imports included;
medians of --runs), at most 150 nodes and 4,000 px on each side; ResNet-50's default forward picture
under 150 nodes. Uses specs/gpt2.yaml and specs/resnet50.yaml when the zoo has
them, else equivalent specs written here. Also prints, for every spec in specs/, the node counts and
seconds of the forward and backward pictures (--quick: forward only). Prints the machine load, since the
figures on a shared 2-core machine depend on it.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GPT2_FALLBACK = """\
spec: 1
name: gpt2-small
params: {vocab: 50257, ctx: 1024, d: 768, heads: 12, layers: 12}
inputs:
  idx: {shape: [B, T], dtype: int64}
blocks:
  block:
    inputs: [x]
    nodes:
      ln1: {op: LayerNorm}
      qkv: {op: Linear, out_features: '${3 * d}'}
      split: {op: split, chunks: 3, dim: -1, names: [q, k, v]}
      attn: {op: attention, in: [split.q, split.k, split.v], heads: '${heads}', causal: true}
      proj: {op: Linear, out_features: '${d}'}
      res1: {op: add, in: [proj, x]}
      ln2: {op: LayerNorm}
      fc: {op: Linear, out_features: '${4 * d}'}
      act: {op: GELU, approximate: tanh}
      fcproj: {op: Linear, out_features: '${d}'}
      res2: {op: add, in: [fcproj, res1]}
    outputs: [res2]
nodes:
  wte: {op: Embedding, num_embeddings: '${vocab}', embedding_dim: '${d}'}
  wpe: {op: learned_pe, max_len: '${ctx}'}
  h: {block: block, repeat: '${layers}'}
  ln_f: {op: LayerNorm}
  head: {op: Linear, out_features: '${vocab}', bias: false, tie: {weight: wte.weight}}
outputs: [head]
"""

RESNET50_FALLBACK = """\
spec: 1
name: resnet50
params: {classes: 1000}
inputs:
  x: {shape: [B, 3, 224, 224]}
blocks:
  bottleneck:
    params: {c: 64}
    inputs: [x]
    nodes:
      conv1: {op: Conv2d, out_channels: '${c}', kernel_size: 1, bias: false}
      bn1: {op: BatchNorm2d}
      relu1: {op: ReLU}
      conv2: {op: Conv2d, out_channels: '${c}', kernel_size: 3, padding: 1, bias: false}
      bn2: {op: BatchNorm2d}
      relu2: {op: ReLU}
      conv3: {op: Conv2d, out_channels: '${4 * c}', kernel_size: 1, bias: false}
      bn3: {op: BatchNorm2d}
      sum: {op: add, in: [bn3, x]}
      out: {op: ReLU}
    outputs: [out]
  first:
    params: {c: 64, stride: 1}
    inputs: [x]
    nodes:
      conv1: {op: Conv2d, out_channels: '${c}', kernel_size: 1, bias: false}
      bn1: {op: BatchNorm2d}
      relu1: {op: ReLU}
      conv2: {op: Conv2d, out_channels: '${c}', kernel_size: 3, stride: '${stride}', padding: 1, bias: false}
      bn2: {op: BatchNorm2d}
      relu2: {op: ReLU}
      conv3: {op: Conv2d, out_channels: '${4 * c}', kernel_size: 1, bias: false}
      bn3: {op: BatchNorm2d}
      down: {op: Conv2d, in: x, out_channels: '${4 * c}', kernel_size: 1, stride: '${stride}', bias: false}
      down_bn: {op: BatchNorm2d}
      sum: {op: add, in: [bn3, down_bn]}
      out: {op: ReLU}
    outputs: [out]
nodes:
  conv1: {op: Conv2d, in: x, out_channels: 64, kernel_size: 7, stride: 2, padding: 3, bias: false}
  bn1: {op: BatchNorm2d}
  relu: {op: ReLU}
  maxpool: {op: MaxPool2d, kernel_size: 3, stride: 2, padding: 1}
  layer1_0: {block: first, c: 64, stride: 1}
  layer1: {block: bottleneck, repeat: 2, c: 64}
  layer2_0: {block: first, c: 128, stride: 2}
  layer2: {block: bottleneck, repeat: 3, c: 128}
  layer3_0: {block: first, c: 256, stride: 2}
  layer3: {block: bottleneck, repeat: 5, c: 256}
  layer4_0: {block: first, c: 512, stride: 2}
  layer4: {block: bottleneck, repeat: 2, c: 512}
  avgpool: {op: AdaptiveAvgPool2d, output_size: 1}
  flat: {op: Flatten}
  fc: {op: Linear, out_features: '${classes}'}
outputs: [fc]
"""


def spec_file(name: str, fallback: str, tmp: Path) -> tuple[Path, str]:
    zoo = ROOT / "specs" / f"{name}.yaml"
    if zoo.is_file():
        return zoo, str(zoo.relative_to(ROOT))
    path = tmp / f"{name}.yaml"
    path.write_text(fallback)
    return path, f"{name} (equivalent spec written by this benchmark; specs/{name}.yaml not present)"


def cli_seconds(argv: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall seconds and CPU seconds (user + system) of the whole `build viz ...` command."""
    walls, cpus = [], []
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "builder.commands.cli", "viz", *argv], capture_output=True,
                              text=True, env=env, cwd=ROOT)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            raise SystemExit(f"build viz {' '.join(argv)} failed:\n{proc.stderr}")
    return walls, cpus


def phases(spec_path: Path) -> dict:
    """In-process seconds of each phase of the backward picture."""
    import builder
    from viz.dot_render import write_picture
    from viz.backward import backward_dot
    from viz.step import one_step

    out = {}
    t = time.perf_counter()
    spec = builder.load(spec_path)
    out["load + check"] = time.perf_counter() - t
    t = time.perf_counter()
    step = one_step(spec)
    out["build + forward + backward"] = time.perf_counter() - t
    t = time.perf_counter()
    dot = backward_dot(step.trace, spec.network().graph, name=spec.name)
    text = dot.to_dot()
    out["DOT text"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        write_picture(text, Path(d) / "b.svg", "svg")
        out["dot layout (svg)"] = time.perf_counter() - t
    from viz.fold import drawn

    out["nodes"] = len(drawn(dot)[0])
    out["note"] = step.batch_note
    return out


def zoo_table(quick: bool) -> None:
    import builder
    from builder.core.errors import UserError
    from viz.backward import backward_dot
    from viz.forward import forward_dot
    from viz.step import one_step

    print(f"\n{'spec':<24} {'fwd nodes':>9} {'fwd s':>7} {'bwd nodes':>9} {'bwd s':>7}")
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        if "." in path.stem:  # weight maps (gpt2.hf-map.yaml) are not specs
            continue
        try:
            spec = builder.load(path)
        except UserError as e:
            print(f"{path.stem:<24} (does not load: {str(e).splitlines()[0][:60]})")
            continue
        for net_name in spec.networks:
            net = spec.networks[net_name]
            label = path.stem if len(spec.networks) == 1 else f"{path.stem}/{net_name}"
            t = time.perf_counter()
            dot = forward_dot(net.graph)
            dot.to_dot()
            fwd, tf = dot.count_nodes(), time.perf_counter() - t
            bn, tb = "-", "-"
            if not quick and net.total_params < 50_000_000:
                t = time.perf_counter()
                step = one_step(spec, net_name if len(spec.networks) > 1 else None)
                bn = backward_dot(step.trace, net.graph).count_nodes()
                tb = f"{time.perf_counter() - t:.2f}"
            print(f"{label:<24} {fwd:>9} {tf:>7.3f} {bn:>9} {tb:>7}")


def backward_png(spec: Path, name: str, tmp: Path, runs: int) -> None:
    """Median seconds, size and nodes of the default backward PNG of `spec`."""
    from PIL import Image

    from viz.dot_render import parse_dot

    out = tmp / f"{spec.stem}_backward.png"
    times, cpus = cli_seconds([str(spec), "--view", "backward", "-o", str(out)], runs)
    med = statistics.median(times)
    with Image.open(out) as im:
        w, h = im.size
    nodes = len([n for n, a in parse_dot(out.with_suffix(".dot").read_text()).nodes.items()
                 if "#legend" not in n and a.get("class") != "caption"])  # titles drawn as text are not nodes
    ok = med < 20 and max(w, h) <= 4000 and nodes <= 150
    print(f"\n{name} default backward PNG: `build viz {spec.name} --view backward -o {out.name}`")
    print(f"  median {med:.2f} s wall over {len(times)} runs ({', '.join(f'{t:.2f}' for t in times)}), CPU "
          f"{statistics.median(cpus):.2f} s; {w} x {h} px, {nodes} nodes; targets < 20 s, <= 4,000 px, "
          f"<= 150 nodes: {'OK' if ok else 'MISSED'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of each timed command (median printed)")
    ap.add_argument("--quick", action="store_true", help="skip the backward pictures of the zoo table")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (1 min) at start")

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        gpt2, gpt2_name = spec_file("gpt2", GPT2_FALLBACK, tmp)
        print(f"\nGPT-2 small backward picture, phases in one process: {gpt2_name}")
        ph = phases(gpt2)
        print(f"  {ph.pop('nodes')} nodes; {ph.pop('note')}")
        for k, v in ph.items():
            print(f"  {k:<28} {v:6.2f} s")

        r50, r50_name = spec_file("resnet50", RESNET50_FALLBACK, tmp)
        backward_png(gpt2, f"GPT-2 small ({gpt2_name})", tmp, args.runs)
        backward_png(r50, f"ResNet-50 ({r50_name})", tmp, args.runs)
        import builder
        from viz.forward import auto_depth, count_visible, forward_dot, max_depth

        g = builder.load(r50).network().graph
        t = time.perf_counter()
        dot = forward_dot(g)
        text = dot.to_dot()
        tf = time.perf_counter() - t
        n = dot.count_nodes()
        print(f"\nResNet-50 default forward picture: {r50_name}")
        print(f"  {n} nodes at depth {auto_depth(g)} of {max_depth(g)} (fully expanded: "
              f"{count_visible(g, max_depth(g))} spec nodes + outputs); target < 150: "
              f"{'OK' if n < 150 else 'MISSED'}; DOT in {tf * 1000:.0f} ms")
        times, _ = cli_seconds([str(r50), "-o", str(tmp / "r50.svg")], 1)
        print(f"  `build viz -o r50.svg`: {times[0]:.2f} s (command, imports included); {len(text):,} bytes of DOT")

    zoo_table(args.quick)
    print(f"\nload average {os.getloadavg()[0]:.2f} (1 min) at the end")


if __name__ == "__main__":
    main()
