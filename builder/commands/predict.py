"""`build predict MODEL.onnx --input FILE` (onnxruntime), or `build predict SPEC --run DIR --input FILE`
(torch, for comparison): class names with probabilities, or values in data units; -o writes them.

A model trained on a CSV reads a CSV in the training file's layout (columns by name, the same category
encoding; the label column, when present, is scored: accuracy, or R2 and MAE)."""
from __future__ import annotations

import sys

from builder.core.errors import UserError
from builder.commands.common import add_weight_args


def register(sub):
    p = sub.add_parser("predict", help="run an exported ONNX file (or a spec, in torch) on an input file")
    p.add_argument("model", metavar="MODEL", help="an .onnx file, or a spec YAML (then --run or --weights)")
    p.add_argument("--input", required=True, metavar="FILE", help=".npy, .npz (arrays named like the inputs), .csv; for a model trained on images: an image, "
                   "a folder or a quoted glob; on a series: the raw series; on Parquet/JSON Lines: such a file")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="write the outputs: .csv (header; prediction, prob_<class>), .npy (first, raw) or .npz (all)")
    p.add_argument("--provider", default="auto", choices=["cpu", "cuda", "auto"],
                   help="execution provider (auto: CUDA when onnxruntime-gpu and a GPU are present)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="samples per run (default 64)")
    p.add_argument("--top-k", type=int, default=1, metavar="K", help="labels printed per sample (default 1)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="with a spec: override a param")
    add_weight_args(p, random=False, when="with a spec: ")
    p.set_defaults(func=run)


def model_runner(args):
    """(runner, engine name) for `build predict`/`build evaluate`: an .onnx file in onnxruntime, or a spec with
    --run/--weights in torch."""
    from export import metadata, predict

    from builder.weights.sources import trained_network
    if args.model.lower().endswith(".onnx"):
        if args.run or args.weights or args.overrides or args.network:
            raise UserError("--run/--weights/--set/--network go with a spec, not with an .onnx file")
        return predict.OnnxRunner(args.model, provider=args.provider), "onnxruntime"
    if not args.model.lower().endswith((".yaml", ".yml")):
        raise UserError(f"{args.model}: expected an .onnx file or a spec .yaml")
    if not (args.run or args.weights):
        raise UserError("predicting with a spec needs trained weights: --run DIR or --weights FILE")
    from builder.data import tokenizer
    from builder.commands.common import load_spec
    spec = load_spec(args, args.model)
    net = spec.network(args.network)
    module, checkpoint = trained_network(spec, net.name, run=args.run, weights=args.weights)
    labels = metadata.class_labels(spec, checkpoint)
    vocabulary = tokenizer.find(None, args.run, checkpoint)
    if labels is None and vocabulary is not None:  # a language model: its tokens, decoded
        labels = tokenizer.token_labels(vocabulary)
    device = {"cpu": "cpu", "cuda": "cuda", "auto": "auto"}[args.provider]
    return predict.TorchRunner(module, labels=labels, device=device, layout=checkpoint.get("data_layout")), "torch"


def run(args):
    from export import inputs, predict
    runner, engine = model_runner(args)
    arrays, truth = inputs.read_inputs(args.input, runner.inputs, runner.layout)
    arrays = inputs.conform(arrays, runner.inputs, args.input)
    note = ""
    if args.provider == "auto" and "CUDA" not in str(runner.device).upper():
        note = " (no GPU: torch sees none)" if engine == "torch" else " (no CUDA: onnxruntime-gpu or a GPU is missing)"
    n = len(next(iter(arrays.values())))
    print(f"{engine} on {runner.device}{note}: {n} samples", file=sys.stderr)
    preparation = (getattr(runner, "meta", None) or {}).get("input_preparation")
    if preparation and not preparation.startswith(("inside the model", "images")):
        print(f"note: in training this model's inputs were prepared by: {preparation}; "
              "feed inputs prepared the same way", file=sys.stderr)
    outputs = predict.predict(runner, arrays, batch_size=args.batch_size)
    if truth is not None:
        print(f"{args.input}: " + predict.score(next(iter(outputs.values())), truth), file=sys.stderr)
    if args.output:
        path = predict.write_outputs(outputs, args.output, runner.labels)
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in outputs.items())
        print(f"wrote {path} ({shapes})")
    else:
        print(predict.format_predictions(outputs, runner.labels, args.top_k))
    return 0
