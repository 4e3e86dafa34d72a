"""`build sweep SPEC`: hyper-parameter search over the spec's `sweep:` space (see builder.sweep)."""
from __future__ import annotations

from builder.commands.common import add_spec_args


def register(sub):
    p = sub.add_parser("sweep", help="search hyper-parameters (Optuna); writes sweeps/<name>/")
    add_spec_args(p)
    p.add_argument("--trials", type=int, metavar="N",
                   help="finished trials the study should have in total (default: sweep.trials)")
    p.add_argument("--jobs", type=int, default=1, metavar="J", help="trials at once, each in its own process")
    p.add_argument("--sweep-dir", metavar="DIR", help="the sweep folder (default sweeps/<spec name>)")
    p.add_argument("--storage", metavar="URL",
                   help="the study's database, any URL Optuna takes (default sqlite:///<sweep dir>/study.db); "
                        "sweeps on several machines given the same URL share one study")
    p.add_argument("--mlflow", nargs="?", const="sqlite:///mlflow.db", metavar="URI",
                   help="track the sweep and each trial (nested) in MLflow (default sqlite:///mlflow.db)")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files per trial")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a --sweep-dir that is not empty and holds no sweep (else refused)")
    p.set_defaults(func=run)


def run(args):
    from builder.spec.reader import parse_override
    from builder.sweep import sweep

    if args.trials is not None and args.trials < 1:
        from builder.core.errors import UserError
        raise UserError(f"--trials must be 1 or more, got {args.trials}")
    sets = dict(parse_override(item) for item in args.overrides)
    try:
        sweep(args.spec, trials=args.trials, jobs=args.jobs, sweep_dir=args.sweep_dir, storage=args.storage,
              sets=sets, safe=args.safe, mlflow=args.mlflow, tensorboard=args.tensorboard, quiet=args.quiet,
              overwrite=args.overwrite)
    except KeyboardInterrupt:
        import sys
        print("sweep interrupted: its finished trials are in the study; run the same command to go on",
              file=sys.stderr)
        return 130
    return 0
