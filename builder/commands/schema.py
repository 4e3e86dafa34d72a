"""`build schema [-o FILE]`: the JSON Schema of the spec language (for yaml-language-server)."""
import json
import sys


def register(sub):
    p = sub.add_parser("schema", help="print the JSON Schema of the spec language")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(func=run)


def run(args):
    from builder.spec.schema import spec_schema
    text = json.dumps(spec_schema(), indent=1, sort_keys=False)
    if args.output:
        from builder.core.io_utils import atomic_write_text
        atomic_write_text(args.output, text + "\n")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0
