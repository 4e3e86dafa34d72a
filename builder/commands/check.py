"""`build check SPEC`: an OK line with totals, or every error found (exit 2). A spec that leaves sizes to
the data (`auto`, ${data.*}) is checked with the sizes its train.data gives, read as `build train` reads them."""
from builder.core.errors import SpecError
from builder.spec.train_section import TrainDiagnostic
from builder.core.types import records
from builder.commands.common import add_spec_args


def register(sub):
    p = sub.add_parser("check", help="check a spec: shapes, arguments, references")
    add_spec_args(p)
    p.set_defaults(func=run)


def run(args):
    try:
        spec = _load(args)
    except SpecError as e:  # train: mistakes found when loading: add those of the other keys' options
        raise SpecError(e.diagnostics + more_train_errors(e.diagnostics)) from None
    if spec.training is not None:  # the section's shape was checked when loading; now its names and options
        from builder.training.checks import option_errors
        errors = option_errors(spec.training)
        if errors:
            raise SpecError(errors)
    nodes = sum(sum(1 for r in records(n.graph) if r.op != "input") for n in spec.networks.values())
    nets = f" in {len(spec.networks)} networks ({', '.join(spec.networks)})" if len(spec.networks) > 1 else ""
    print(f"OK {spec.name}: {nodes} nodes{nets}, {spec.total_params:,} parameters "
          f"({spec.trainable_params:,} trainable)")
    return 0


def _load(args):
    from builder.data.sizes import load_sized
    from builder.spec.reader import parse_override

    sets = dict(parse_override(item) for item in args.overrides)
    return load_sized(args.spec, sets, safe=args.safe)


def more_train_errors(diagnostics) -> list:
    """The option errors of the `train:` keys the spec stage found no mistake in (every error, one run)."""
    found = [d for d in diagnostics if isinstance(d, TrainDiagnostic) and d.config is not None]
    if not found:
        return []
    from builder.training.checks import option_errors
    return option_errors(found[0].config, skip={d.key for d in found})
