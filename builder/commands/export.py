"""`build export SPEC (--run DIR | --weights FILE | --random) -o OUT.onnx`: a verified single-file ONNX;
with `--quantize dynamic|static|fp16` a smaller one (export/quantize.py), with `--triton DIR` also a Triton
model repository (export/triton.py)."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from builder.commands.common import add_spec_args, add_weight_args, load_spec
from builder.core.errors import UserError


def parse_dims(text: str | None):
    if text is None:
        return None
    return [d.strip() for d in text.split(",") if d.strip()]


def register(sub):
    p = sub.add_parser("export", help="export a network to ONNX, verified against torch with onnxruntime")
    add_spec_args(p)
    add_weight_args(p, required=True)
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx",
                   help="the ONNX file to write (with --generate: a folder)")
    p.add_argument("--generate", action="store_true",
                   help="a language model for generation: prefill.onnx and decode.onnx (key/value cache) in OUT")
    p.add_argument("--tokenizer", metavar="FILE", help="vocab.json or tokenizer.json, when the weights have none")
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default: the exporter's)")
    p.add_argument("--dynamic", metavar="B,T", help="the symbolic dims that stay dynamic (default: all)")
    p.add_argument("--quantize", choices=["dynamic", "static", "fp16"],
                   help="write an int8 (dynamic; static: calibrated on the training split) or float16 file")
    p.add_argument("--max-drop", type=float, default=1.0, metavar="POINTS",
                   help="with --quantize: refuse when the test-split metric drops by more (default 1 point)")
    p.add_argument("--calibration-rows", type=int, default=128, metavar="N",
                   help="with --quantize static: training rows sampled for calibration (default 128)")
    p.add_argument("--triton", metavar="DIR", help="also write a Triton model repository: DIR/<name>/1/model.onnx "
                   "and config.pbtxt")
    p.add_argument("--max-batch", type=int, default=64, metavar="N",
                   help="with --triton: max_batch_size of config.pbtxt (default 64)")
    p.set_defaults(func=run)


def run(args):
    from export import metadata
    from export.onnx_export import describe, export_onnx

    from builder.data import tokenizer
    from builder.weights.sources import trained_network

    spec = load_spec(args)
    net = spec.network(args.network)
    module, checkpoint = trained_network(spec, net.name, run=args.run, weights=args.weights, random=args.random)
    labels = metadata.class_labels(spec, checkpoint)
    vocabulary = tokenizer.find(args.tokenizer, args.run, checkpoint)
    if args.generate:
        from export.generate_onnx import export_generation
        manifest = export_generation(module, args.output, spec=spec, tokenizer=vocabulary, opset=args.opset)
        print(f"wrote {args.output}/prefill.onnx and decode.onnx ({len(manifest['cache'])} cache tensors, "
              f"dynamic batch, length and past); onnxruntime matches torch, max abs diff "
              f"{manifest['max_abs_diff']:.2g}" + ("" if vocabulary else "; no vocabulary: generate with --ids"))
        return 0
    if (args.quantize or args.triton) and args.generate:
        raise UserError("--quantize and --triton take a single-file export, not --generate")
    if args.calibration_rows < 1 or args.max_batch < 1:
        raise UserError("--calibration-rows and --max-batch must be at least 1")
    if not args.max_drop >= 0:
        raise UserError(f"--max-drop {args.max_drop:g}: expected a number of points, 0 or more")
    options = dict(spec=spec, network=net.name, dynamic=parse_dims(args.dynamic), opset=args.opset, labels=labels,
                   tokenizer=vocabulary, data=metadata.data_record(checkpoint, module))
    if args.quantize == "static":
        from export.split_data import require_data
        require_data(spec)  # before the export: static calibration needs the spec's training split
    if not args.quantize:
        result = export_onnx(module, args.output, **options)
        print(describe(result))
    else:
        from export import quantize
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_onnx(module, Path(tmp) / "fp32.onnx", **options)
            print(describe(fp32).replace(f"wrote {fp32.path}", "the float32 export", 1), file=sys.stderr)
            report = quantize.quantize_export(module, fp32.path, args.output, args.quantize, spec=spec,
                                              checkpoint=checkpoint, max_drop=args.max_drop,
                                              calibration_rows=args.calibration_rows, graph=net.graph)
        print(quantize.describe(report))
    if args.triton:
        from export import triton
        config = triton.write_repository(args.output, args.triton, name=spec.name, max_batch=args.max_batch)
        print(f"wrote {config.parent}: Triton model '{config.parent.name}' (1/model.onnx, config.pbtxt)")
    return 0
