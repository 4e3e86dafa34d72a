"""Arguments shared by subcommands that read a spec."""
from __future__ import annotations

from ..spec import parse_override


def add_spec_args(p):
    p.add_argument("spec", metavar="SPEC", help="path to a spec YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param (width=32) or a train/export key (train.optimizer.lr=0.01)")
    p.add_argument("--safe", action="store_true", help="confine `use:` imports to the spec's folder")


def load_spec(args):
    from .. import load
    overrides = dict(parse_override(item) for item in args.overrides)
    return load(args.spec, overrides=overrides, safe=getattr(args, "safe", False))
