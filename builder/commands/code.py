"""`build code SPEC`: print the generated forward of the compiled torch.fx.GraphModule."""
import textwrap

from builder.commands.common import add_spec_args, load_spec


def register(sub):
    p = sub.add_parser("code", help="print the generated forward() of the compiled module")
    add_spec_args(p)
    p.add_argument("--network", help="which network of a multi-network spec")
    p.set_defaults(func=run)


def run(args):
    from builder.compile import compile_network
    spec = load_spec(args)
    names = [args.network] if args.network else list(spec.networks)
    for name in names:
        gm = compile_network(spec, name, device="meta")
        if len(names) > 1:
            print(f"# network: {name}")
        print(f"class {type(gm).__name__}(torch.nn.Module):")
        print(textwrap.indent(gm.code.strip("\n"), "    ") + "\n")
    return 0
