"""Arguments shared by subcommands: the spec (`SPEC --set --safe`) and where weights come from
(`--run DIR | --weights FILE | --random`, with `--network NAME`)."""
from __future__ import annotations

from builder.spec.reader import parse_override


def add_spec_args(p):
    p.add_argument("spec", metavar="SPEC", help="path to a spec YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param (width=32) or a train/export key (train.optimizer.lr=0.01)")
    p.add_argument("--safe", action="store_true", help="confine `use:` imports to the spec's folder")


def load_spec(args, path=None):
    """The spec of `args.spec` (or `path`) as every command that takes `--run DIR` reads it: the params that
    run was trained with (its resolved.yaml, sizes taken from the data included) are the defaults and
    `--set` overrides them, so the network has the shapes of the run's weights."""
    from builder import load
    from builder.core.errors import SpecError, UserError
    from builder.training.runlog import run_params
    run_dir = getattr(args, "run", None)
    sets = dict(parse_override(item) for item in args.overrides)
    trained = run_params(run_dir)
    try:
        return load(path or args.spec, overrides={**trained, **sets}, safe=getattr(args, "safe", False))
    except SpecError as e:
        gone = [k for k in trained if k not in sets and f"--set {k}: the spec has no param" in str(e)]
        if gone:
            raise UserError(f"--run {run_dir}: the run was trained with param '{gone[0]}', which "
                            f"{path or args.spec} no longer has (the spec changed since; the run's own copy is "
                            f"{run_dir}/spec.yaml)") from None
        raise


def add_weight_args(p, *, random: bool = True, required: bool = False, when: str = "") -> None:
    """--run / --weights (and --random, unless `random` is False), mutually exclusive, and --network;
    `when` prefixes the help of the first three ("with a spec: "). Read them with weight_sources."""
    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument("--run", metavar="DIR", help=f"{when}a training run folder (its best.pt, else last.pt)")
    src.add_argument("--weights", metavar="FILE", help=f"{when}a checkpoint or state_dict file (.pt)")
    if random:
        src.add_argument("--random", action="store_true", help=f"{when}the network's initial (random) weights")
    p.add_argument("--network", metavar="NAME", help="which network of a multi-network spec (e.g. generator)")
