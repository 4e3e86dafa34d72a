"""`build export SPEC (--run DIR | --weights FILE | --random) -o OUT.onnx`: a verified single-file ONNX."""
from __future__ import annotations

from builder.commands.common import add_spec_args, add_weight_args, load_spec


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
    result = export_onnx(module, args.output, spec=spec, network=net.name, dynamic=parse_dims(args.dynamic),
                         opset=args.opset, labels=labels, tokenizer=vocabulary,
                         data=metadata.data_record(checkpoint, module))
    print(describe(result))
    return 0
