"""`build summary SPEC [--json]`: the per-node table with parameter and MAC totals (no weights allocated)."""
import json

from ..summary import format_table, summarize
from .common import add_spec_args, load_spec


def register(sub):
    p = sub.add_parser("summary", help="per-node table: path, op, output shape, parameters, MACs")
    add_spec_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args):
    data = summarize(load_spec(args))
    if args.json:
        print(json.dumps({k: data[k] for k in ("name", "total_params", "trainable_params", "total_macs",
                                               "networks", "nodes")}, indent=1))
    else:
        print(format_table(data))
    return 0
