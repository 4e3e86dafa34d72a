"""The `build` command: a thin argparse layer over functions that return torch/onnx/networkx objects.

Each subcommand lives in `builder/commands/<name>.py` with `register(subparsers)`. User mistakes print
one line per error and exit 2; nothing prints a Python traceback for them.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from builder.commands import COMMANDS
from builder.core.errors import UserError


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="build", description="Declarative neural networks from YAML specs.")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import a Python module that registers extra ops (repeatable)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"builder.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"builder.commands.{name}":
                continue  # a command whose module is not present in this checkout
            raise
        module.register(sub)
    for command in sub.choices.values():  # every command: the total size a spec may have
        command.add_argument("--max-params", type=int, metavar="N", default=None,
                             help="refuse a spec of more than N parameters in all (default 2,000,000,000)")
    return parser


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        from builder.ops import load_entry_points, load_plugin
        load_entry_points()
        for module in args.plugin:
            load_plugin(module)
        from builder.core.limits import allow_params
        with allow_params(args.max_params):
            code = args.func(args)
    except UserError as e:
        print(str(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
