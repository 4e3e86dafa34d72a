"""The ops reference page, generated from the registry so that it cannot drift from the code.

For every registered op (built-in, plug-in or added later: nothing here lists ops by name): its one-line
summary, aliases, arguments with their types and defaults (from the constructor the op builds), which
sizes are inferred, its inputs and outputs, its shape rule in words, and how it goes to ONNX.

    python -m builder.ops.reference              # rewrites docs/reference/ops.md
    python -m builder.ops.reference --check      # exit 1 when the checked-in page is stale
"""
from __future__ import annotations

import argparse
import inspect
import re
import sys
import types
import typing
from pathlib import Path

from builder import ops
from builder.ops.registry import OpDef

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "ops.md"
ONNX_DEFAULT = "exported by torch.onnx (dynamo); every file is checked against torch when written"
CATEGORY_TITLES = {"layer": "Layers", "recurrent": "Recurrent layers", "attention": "Attention",
                   "position": "Positions", "tensor": "Tensor arithmetic and joining", "shape": "Shapes",
                   "elementwise": "Element-wise", "reduction": "Reductions and indexing"}
_EMPTY = inspect.Parameter.empty


def unique_ops() -> list[OpDef]:
    """Every registered op once (an alias shares its op's OpDef), by category, then name."""
    seen, found = set(), []
    for name in ops.names():
        op = ops.get(name)
        if id(op) not in seen:
            seen.add(id(op))
            found.append(op)
    return sorted(found, key=lambda op: (op.category, op.name.lower()))


def module_class(op: OpDef):
    """The nn.Module class the op constructs: its torch class, else the class its `build` callable names."""
    if op.torch_class is not None:
        return op.torch_class
    if op.build is None:
        return None
    if inspect.isclass(op.build):
        return op.build
    candidates = [d for d in (op.build.__defaults__ or ()) if inspect.isclass(d)]
    try:
        seen = inspect.getclosurevars(op.build)
    except (TypeError, ValueError):
        return candidates[0] if candidates else None
    spaces = [v for v in {**seen.globals, **seen.nonlocals}.values() if isinstance(v, types.ModuleType)]
    for name in op.build.__code__.co_names:
        for space in spaces:
            value = getattr(space, name, None)
            if inspect.isclass(value):
                candidates.append(value)
    for value in {**seen.globals, **seen.nonlocals}.values():
        if inspect.isclass(value):
            candidates.append(value)
    return candidates[0] if candidates else None


def type_text(hint) -> str:
    if hint is _EMPTY or hint is None:
        return ""
    if isinstance(hint, str):
        return hint
    if hint is type(None):
        return "None"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is not None:
        args = ", ".join("..." if a is Ellipsis else type_text(a) for a in typing.get_args(hint))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(hint, "__name__", str(hint)).replace("typing.", "")


def build_defaults(op: OpDef) -> dict:
    """Defaults the build callable itself applies (`a.get("dim", -1)`), read from its source."""
    try:
        source = inspect.getsource(op.build)
    except (OSError, TypeError):
        return {}
    found = {}
    for name, default in re.findall(r"""\ba\.get\(["'](\w+)["'](?:,\s*([^()]+?|\w*\([^()]*\)))?\)""", source):
        found.setdefault(name, default.strip() if default else "None")
    return found


def arguments(op: OpDef) -> list[tuple[str, str, str, str]]:
    """(name, type, default, note) for every argument a spec may write for the op."""
    cls = module_class(op)
    fallback = build_defaults(op) if op.torch_class is None else {}
    params, hints = {}, {}
    if cls is not None:
        try:
            params = dict(inspect.signature(cls.__init__).parameters)
        except (TypeError, ValueError):
            params = {}
        try:
            hints = typing.get_type_hints(cls.__init__)
        except Exception:  # annotations that do not resolve: the signature's text is still shown
            hints = {}
    rows = []
    for name in op.allowed_args():
        if name.startswith("_"):      # torch's private parameters (Embedding's _weight): public_args drops them
            continue
        p = params.get(name)
        hint = hints.get(name, p.annotation if p is not None else _EMPTY)
        if name in op.inferred:
            default, note = "", "inferred from the input"
        elif name in op.required:
            default, note = "", "required"
        elif p is not None and p.default is not _EMPTY:
            default, note = repr(p.default), ""
        elif name in fallback:
            default, note = fallback[name], ""
        else:
            default, note = "", ""
        rows.append((name, type_text(hint), default, note))
    return rows


def summary(op: OpDef) -> str:
    return op.summary() or "(no description)"


def shape_rule(op: OpDef) -> str:
    """The shape rule in words: the op's own `shape_doc`, else the Shape section of torch's docstring."""
    if op.shape_doc:
        return op.shape_doc
    text = inspect.getdoc(op.torch_class) if op.torch_class is not None else ""
    match = re.search(r"^Shape:\s*\n(.*?)(?:\n\s*\n(?!\s*-)|\Z)", text or "", flags=re.S | re.M)
    if not match:
        return ""
    lines = [re.sub(r":math:`([^`]*)`", r"\1", l.strip()) for l in match[1].splitlines() if l.strip()]
    lines = [l.replace("\\text{", "").replace("}", "").replace("{", "").replace("\\", "") for l in lines]
    text = "; ".join(l.lstrip("- ") for l in lines if not l.startswith("where"))
    text = re.sub(r",?\s*where\s*$", "", text).replace(".;", ";")
    return re.sub(r"([*_])", r"\\\1", text)     # torch's (*) and H_in are text, not Markdown emphasis


def inputs_text(op: OpDef) -> str:
    low, high = op.arity
    if op.slots:
        slots = ", ".join(f"`{s}`" + (" (required)" if s in op.required_slots else "") for s in op.slots)
        count = f"named inputs `in: {{slot: node}}`: {slots}"
    elif low == high:
        count = "none" if low == 0 else f"{low} input" + ("s" if low > 1 else "")
    elif high is None:
        count = f"{low} or more inputs"
    else:
        count = f"{low} to {high} inputs"
    kind = {"float": "floating point", "int": "integer", None: "any dtype"}.get(op.in_dtype, op.in_dtype)
    return count if low == 0 and not op.slots else f"{count}; {kind}"


def outputs_text(op: OpDef) -> str:
    if callable(op.ports):
        try:
            ports = op.port_names({})
        except Exception:  # ports that depend on arguments the empty dict lacks
            return "ports named by its arguments"
        return "ports named by its arguments (default: " + ", ".join(f"`{p}`" for p in ports) + ")"
    return "one output" if tuple(op.ports) == ("out",) else "ports " + ", ".join(f"`{p}`" for p in op.ports)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def op_section(op: OpDef) -> str:
    out = [f"### `{op.name}`", "", cell(summary(op)), ""]
    if op.aliases:
        out += ["Also written " + ", ".join(f"`{a}`" for a in op.aliases) + ".", ""]
    rows = arguments(op)
    if rows:
        out += ["| argument | type | default | |", "| --- | --- | --- | --- |"]
        out += [f"| `{n}` | {cell(t) and '`' + cell(t) + '`'} | {d and '`' + cell(d) + '`'} | {note} |"
                for n, t, d, note in rows]
        out.append("")
    else:
        out += ["No arguments.", ""]
    out.append(f"- **Inputs**: {inputs_text(op)}")
    out.append(f"- **Outputs**: {outputs_text(op)}")
    rule = shape_rule(op)
    if rule:
        out.append(f"- **Shape**: {cell(rule)}")
    out.append(f"- **ONNX**: {cell(op.onnx or ONNX_DEFAULT)}")
    return "\n".join(out) + "\n"


def render() -> str:
    """The whole page."""
    found = unique_ops()
    head = [
        "# Ops reference",
        "",
        "<!-- Generated by `python -m builder.ops.reference` from the op registry; do not edit by hand. -->",
        "",
        f"Every op of the registry ({len(found)} ops; aliases under their op), grouped by kind. Arguments are "
        "the constructor's, with its types and defaults; an *inferred* argument is never written (it follows "
        "from the input). [The ops page](../ops.md) has one line per op.",
        "",
    ]
    body, category = [], None
    for op in found:
        if op.category != category:
            category = op.category
            body += [f"## {CATEGORY_TITLES.get(category, category.capitalize())}", ""]
        body.append(op_section(op))
    return "\n".join(head + body).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write (or --check) docs/reference/ops.md from the op registry.")
    parser.add_argument("--check", action="store_true", help="exit 1 when the page differs from the registry")
    parser.add_argument("-o", "--output", type=Path, default=PAGE)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = args.output.is_file() and args.output.read_text(encoding="utf-8") == text
        if not same:
            print(f"{args.output} is stale: run python -m builder.ops.reference", file=sys.stderr)
        return 0 if same else 1
    from builder.core.io_utils import atomic_write_text
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output, text)
    print(f"wrote {args.output} ({len(unique_ops())} ops)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
