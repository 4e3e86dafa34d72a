"""`build summary SPEC [--json] [--set-dim H=512]`: the per-node table with parameter and MAC totals
(no weights allocated); MACs at the declared example sizes unless --set-dim names others."""
import json

from builder.spec.summary import format_table, parse_sizes, summarize
from builder.commands.common import add_spec_args, load_spec


def register(sub):
    p = sub.add_parser("summary", help="per-node table: path, op, output shape, parameters, MACs")
    add_spec_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--set-dim", dest="set_dims", action="append", default=[], metavar="NAME=SIZE",
                   help="count MACs with this symbolic dim at SIZE (repeatable; default: each dim's "
                        "`example:`, else its minimum; B = 1)")
    p.set_defaults(func=run)


def run(args):
    data = summarize(load_spec(args), parse_sizes(args.set_dims))
    if args.json:
        print(json.dumps({k: data[k] for k in ("name", "total_params", "trainable_params", "total_macs",
                                               "macs_at", "dims", "networks", "nodes")}, indent=1))
    else:
        print(format_table(data))
    return 0
