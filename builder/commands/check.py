"""`build check SPEC`: an OK line with totals, or every error found (exit 2)."""
from ..types import records
from .common import add_spec_args, load_spec


def register(sub):
    p = sub.add_parser("check", help="check a spec: shapes, arguments, references")
    add_spec_args(p)
    p.set_defaults(func=run)


def run(args):
    spec = load_spec(args)
    if spec.train:
        from ..errors import UserError
        from ..trainer import check_train
        try:
            check_train(spec.train)  # keys, names and options; no data is read
        except UserError as e:
            raise UserError(f"{args.spec}: error: {e}") from None
    nodes = sum(sum(1 for r in records(n.graph) if r.op != "input") for n in spec.networks.values())
    nets = f" in {len(spec.networks)} networks ({', '.join(spec.networks)})" if len(spec.networks) > 1 else ""
    print(f"OK {spec.name}: {nodes} nodes{nets}, {spec.total_params:,} parameters "
          f"({spec.trainable_params:,} trainable)")
    return 0
