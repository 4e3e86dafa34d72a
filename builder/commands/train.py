"""`build train SPEC`: train a spec by its `train:` section and leave a run folder (see builder.training.runlog).

With `--nproc-per-node N` the command re-launches itself through torch.distributed.run; the workers run
this module (`python -m builder.commands.train ...`) with the remaining arguments.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path


def add_arguments(p):
    p.add_argument("spec", metavar="SPEC", nargs="?", help="path to a spec YAML file (omit with --resume)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param (hidden=64) or a train key (train.optimizer.lr=0.01)")
    p.add_argument("--safe", action="store_true", help="confine `use:` imports to the spec's folder")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in a run folder that already holds a run (its run files are deleted), or "
                        "write into a non-empty folder that holds no run (else refused)")
    p.add_argument("--run-dir", metavar="DIR", help="run folder (default runs/<spec name>)")
    p.add_argument("--epochs", type=int, help="train for this many epochs in total (overrides train.epochs)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--compile", action="store_true", help="run the network through torch.compile")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines (the test line and run folder still print)")
    p.add_argument("--log-json", action="store_true", help="print one JSON line of metrics per epoch")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files")
    p.add_argument("--mlflow", nargs="?", const="sqlite:///mlflow.db", metavar="URI",
                   help="log params, per-epoch metrics and the run's files to MLflow (default sqlite:///mlflow.db)")
    p.add_argument("--onnx", action="store_true", help="with --mlflow: also export and log model.onnx")
    p.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                   help="train on N processes per machine (DistributedDataParallel via torchrun)")
    p.add_argument("--nnodes", default="1", help="machines taking part (torchrun's --nnodes)")
    p.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="rendezvous address for several machines")


def register(sub):
    p = sub.add_parser("train", help="train a spec on its data; writes runs/<name>/")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args):
    from builder.training.distributed import launch, launched_by_torchrun
    from builder.core.errors import UserError

    if not args.spec and not args.resume:
        raise UserError("build train: give a SPEC, or --resume RUN_DIR")
    if args.resume and args.overwrite:
        raise UserError("build train: --resume continues a run, --overwrite starts it over; give one")
    if (args.nproc_per_node > 1 or str(args.nnodes) != "1") and not launched_by_torchrun():
        return launch(_worker_argv(args), args.nproc_per_node, args.nnodes, args.rdzv_endpoint)

    from builder.spec.reader import parse_override
    from builder.training.book import TrainingInterrupted
    from builder.training.entry import train

    sets = dict(parse_override(item) for item in args.overrides)
    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    options = dict(run_dir=args.run_dir, device=args.device, quiet=args.quiet, log_json=args.log_json,
                   compile=args.compile, tensorboard=args.tensorboard)
    if args.onnx and not args.mlflow:
        raise UserError("build train: --onnx exports the trained model for --mlflow; give --mlflow too")
    try:
        if args.resume:
            train_sets = {k: v for k, v in sets.items() if k.startswith("train.")}
            with _tracked(args, None) as callback:
                _, history, run_dir = train(resume=args.resume, callback=callback, **options, **train_sets,
                                            **epochs)
        else:
            from builder.data.sizes import load_sized
            spec = load_sized(args.spec, sets, safe=args.safe)  # `auto` and ${data.*} from the training data
            with _tracked(args, spec) as callback:
                _, history, run_dir = train(spec, overwrite=args.overwrite, callback=callback, **options, **epochs)
    except TrainingInterrupted as e:  # Ctrl-C or SIGTERM: the finished epochs are saved
        print(str(e), file=sys.stderr)
        return 128 + e.signum
    if not args.log_json:  # also with --quiet: where the run is, is its result
        print(f"run folder: {run_dir}")
    return 0


@contextlib.contextmanager
def _tracked(args, spec):
    """With --mlflow (on the main process only): an MLflow run fed by the trainer's epoch callback, given
    the run folder's files (and model.onnx with --onnx) at the end; else no callback."""
    import os
    if not args.mlflow or os.environ.get("RANK", "0") != "0":
        yield None
        return
    import builder
    from builder.training.tracking import MlflowRun

    if spec is None:  # --resume: the spec the run was started from
        from builder.training.runlog import read_resolved
        from builder.training.entry import _spec_source
        resolved = read_resolved(args.resume)
        spec = builder.load(_spec_source(args.resume, resolved), overrides=resolved.get("params") or {})
    run_dir = Path(args.resume or args.run_dir or Path("runs") / spec.name)
    tracker = MlflowRun(args.mlflow, experiment=spec.name, run_name=run_dir.name, spec=spec)
    try:
        yield tracker.chain()
    except BaseException as e:
        tracker.finish(run_dir, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    if args.onnx:
        export_onnx_file(spec, run_dir)
    tracker.finish(run_dir, "FINISHED")


def export_onnx_file(spec, run_dir) -> Path:
    """The run's best weights as a verified ONNX file `model.onnx` in the run folder (for --onnx)."""
    from export import metadata
    from export.onnx_export import export_onnx

    from builder.weights.sources import trained_network

    net = spec.network()
    module, checkpoint = trained_network(spec, net.name, run=str(run_dir))
    out = Path(run_dir) / "model.onnx"
    export_onnx(module, out, spec=spec, network=net.name, labels=metadata.class_labels(spec, checkpoint))
    return out


def _worker_argv(args):
    """The command line each torchrun worker runs: this one, without the launcher's options."""
    argv = [args.spec] if args.spec else []
    for module in getattr(args, "plugin", []) or []:
        argv += ["--plugin", module]
    for item in args.overrides:
        argv += ["--set", item]
    for flag, value in (("--resume", args.resume), ("--run-dir", args.run_dir), ("--epochs", args.epochs),
                        ("--device", args.device)):
        if value is not None:
            argv += [flag, str(value)]
    if args.mlflow:
        argv += ["--mlflow", args.mlflow]
    for flag in ("safe", "overwrite", "compile", "quiet", "log_json", "tensorboard", "onnx"):
        if getattr(args, flag):
            argv.append("--" + flag.replace("_", "-"))
    return argv


def main(argv=None):
    """Entry point of each torchrun worker."""
    import argparse

    from builder.core.errors import UserError

    parser = argparse.ArgumentParser(prog="build train")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        from builder.ops import load_entry_points, load_plugin
        load_entry_points()  # as builder.commands.cli does before running a command
        for module in args.plugin:
            load_plugin(module)
        return run(args)
    except UserError as e:
        print(str(e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
