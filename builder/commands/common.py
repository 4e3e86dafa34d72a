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
    """The spec of `args.spec` (or `path`) with its `--set`s; with `--run DIR`, the sizes that run took
    from its data (`auto`, ${data.*}; builder/data/sizes.py) too."""
    from builder import load
    from builder.data.sizes import run_sizes
    overrides = {**run_sizes(getattr(args, "run", None)), **dict(parse_override(item) for item in args.overrides)}
    return load(path or args.spec, overrides=overrides, safe=getattr(args, "safe", False))


def add_weight_args(p, *, random: bool = True, required: bool = False, when: str = "") -> None:
    """--run / --weights (and --random, unless `random` is False), mutually exclusive, and --network;
    `when` prefixes the help of the first three ("with a spec: "). Read them with weight_sources."""
    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument("--run", metavar="DIR", help=f"{when}a training run folder (its best.pt, else last.pt)")
    src.add_argument("--weights", metavar="FILE", help=f"{when}a checkpoint or state_dict file (.pt)")
    if random:
        src.add_argument("--random", action="store_true", help=f"{when}the network's initial (random) weights")
    p.add_argument("--network", metavar="NAME", help="which network of a multi-network spec (e.g. generator)")
