"""`build convert-weights SPEC --from FILE --map MAP.yaml -o weights.pt`: foreign weights -> the spec's names.

Reads a torch state_dict (torch.load with weights_only=True) or a .safetensors file, renames, transposes
and splits its tensors by the weight map, checks that every source key is used and every parameter and
buffer of the spec is filled with its exact shape, and writes a state_dict that `module.load_state_dict`
takes as is. The spec's module is built on the meta device: no weights are allocated for it.
"""
from __future__ import annotations

from builder.commands.common import add_spec_args, load_spec


def register(sub):
    p = sub.add_parser("convert-weights", help="map a foreign checkpoint (torch or safetensors) onto a spec's "
                                               "parameter names, checked, and save it")
    add_spec_args(p)
    p.add_argument("--from", dest="source", required=True, metavar="FILE",
                   help="the weights to convert: .pt/.pth/.bin (torch) or .safetensors")
    p.add_argument("--map", dest="map", metavar="MAP.yaml",
                   help="weight map: key renames, transposes, splits (default: keys already match)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.pt", help="where to write the converted state_dict")
    p.add_argument("--network", default=None, help="which network of a multi-network spec")
    p.set_defaults(func=run)


def run(args):
    from builder import build
    from builder.weights.loader import convert_state_dict, read_map, read_state_dict, save_state_dict

    spec = load_spec(args)
    mapping = read_map(args.map) if args.map else None
    module = build(spec, network=args.network, device="meta")
    source = read_state_dict(args.source)
    converted = convert_state_dict(source, mapping, module)
    out = save_state_dict(converted, args.output)
    params = dict(module.named_parameters())  # tied parameters once
    n = sum(converted[k].numel() for k in params)
    print(f"OK {spec.name}: {len(source)} source tensors -> {len(converted)} entries "
          f"({n:,} parameters) written to {out}")
    return 0
