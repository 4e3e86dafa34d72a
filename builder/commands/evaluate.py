"""`build evaluate SPEC --run DIR --data FILE [-o OUT_DIR]` or `build evaluate MODEL.onnx --data FILE`:
metrics of a trained model on a labelled file (builder.training.evaluation), written to OUT_DIR/metrics.json."""
from __future__ import annotations

import sys
from pathlib import Path

from builder.core.errors import UserError
from builder.commands.common import add_weight_args


def register(sub):
    p = sub.add_parser("evaluate", help="metrics (and a confusion matrix) of a trained model on a labelled file")
    p.add_argument("model", metavar="MODEL", help="an .onnx file, or a spec YAML (then --run or --weights)")
    p.add_argument("--data", required=True, metavar="FILE",
                   help="a labelled .csv in the training file's layout, an .npz (inputs by name, labels as y), a "
                   "folder of class folders (images), a raw series, or a Parquet/JSON Lines file")
    p.add_argument("-o", "--output", metavar="OUT_DIR", help="folder for metrics.json and the confusion matrix "
                   "(default: evaluation/<data file name>)")
    p.add_argument("--provider", default="auto", choices=["cpu", "cuda", "auto"], help="where the model runs")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="samples per run (default 256)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="with a spec: override a param")
    add_weight_args(p, random=False, when="with a spec: ")
    p.set_defaults(func=run)


def run(args):
    import numpy as np
    from export import inputs, predict

    from builder.training import evaluation
    from builder.commands.predict import model_runner

    runner, engine = model_runner(args)
    data = Path(args.data)
    if data.suffix.lower() == ".csv" and not runner.layout:
        raise UserError(f"{args.model}: not trained on a CSV file (no column layout saved); give --data an "
                        ".npz with the inputs by name and the labels as y")
    arrays, truth = inputs.read_inputs(data, runner.inputs, runner.layout)
    if truth is None:
        target = (runner.layout or {}).get("target") or ["y"]
        raise UserError(f"--data {data}: no labels in it ({'column' if data.suffix.lower() == '.csv' else 'array'} "
                        f"{', '.join(target)})")
    arrays = inputs.conform(arrays, runner.inputs, str(data))
    first = next(iter(predict.predict(runner, arrays, batch_size=args.batch_size).values()))
    truth = np.asarray(truth)
    if len(truth) != len(first):
        raise UserError(f"--data {data}: {len(first)} samples but {len(truth)} labels")
    if truth.dtype.kind == "f" and not np.isfinite(truth).all():  # a series' last windows forecast past its end
        known = np.isfinite(truth.reshape(len(truth), -1)).all(axis=1)
        print(f"{data}: {int((~known).sum())} forecast(s) past the end of the series are not scored", file=sys.stderr)
        first, truth = first[known], truth[known]
    if evaluation.is_classifier(first, truth):
        evaluation.check_class_ids(truth, first.shape[1], f"--data {data}")
        labels = [predict.class_name(runner.labels, i) for i in range(first.shape[1])]
        metrics, matrix = evaluation.classification_metrics(first, truth, labels)
    else:
        metrics, matrix, labels = evaluation.regression_metrics(first, truth), None, None
    metrics = {"model": str(args.model), "data": str(data), "engine": engine, **metrics}
    out_dir = Path(args.output) if args.output else Path("evaluation") / data.stem
    written = evaluation.write_report(out_dir, metrics, matrix, labels)
    shown = {k: v for k, v in metrics.items() if isinstance(v, float)}
    print(f"{data}: {metrics['rows']} rows  " + "  ".join(f"{k} {v:.4g}" for k, v in shown.items()), file=sys.stderr)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
