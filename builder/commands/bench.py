"""`build bench SPEC [--weights FILE] [--batch 1,32] [--threads N]`: median latency of torch eager,
torch.compile and onnxruntime, interleaved, with the largest output difference."""
from __future__ import annotations

import tempfile
from pathlib import Path

from builder.core.errors import UserError
from builder.commands.common import add_spec_args, add_weight_args, load_spec


def register(sub):
    p = sub.add_parser("bench", help="latency: torch eager vs torch.compile vs onnxruntime")
    add_spec_args(p)
    add_weight_args(p)  # neither --run nor --weights: the random init
    p.add_argument("--batch", default="1,32", metavar="1,32", help="batch sizes (default 1,32)")
    p.add_argument("--size", action="append", default=[], metavar="SYM=N",
                   help="size of another symbolic dim, e.g. T=128 (default: 8, images 32)")
    p.add_argument("--threads", type=int, metavar="N", help="threads for every engine (default: torch's)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to compile on CPU)")
    p.add_argument("--seconds", type=float, default=2.0, metavar="S",
                   help="timing budget per batch size (at least 10 interleaved runs; default 2)")
    p.set_defaults(func=run)


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{flag} {text}: expected comma-separated whole numbers") from None
    if not values or min(values) < 1:
        raise UserError(f"{flag} {text}: expected positive whole numbers")
    return values


def parse_sizes(items) -> dict:
    sizes = {}
    for item in items:
        name, _, value = item.partition("=")
        if not name or not value.isdigit() or int(value) < 1:
            raise UserError(f"--size {item}: expected SYM=N, e.g. T=128")
        sizes[name] = int(value)
    return sizes


def run(args):
    from export import bench
    from export.onnx_export import export_onnx

    from builder.weights.sources import trained_network

    batches = _ints(args.batch, "--batch")
    spec = load_spec(args)
    net = spec.network(args.network)
    module, _ = trained_network(spec, net.name, run=args.run, weights=args.weights, random=args.random)
    sizes = parse_sizes(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{spec.name}.onnx"
        export_onnx(module, path, spec=spec, network=net.name, sizes=sizes)
        rows = bench.bench_network(spec.name, module, path, batches, sizes=sizes, threads=args.threads,
                                   use_compile=not args.no_compile, seconds=args.seconds,
                                   min_runs=10 if args.seconds >= 1 else 3, graph=net.graph)
    print(bench.format_table(rows))
    return 0
