"""`build viz`: graphviz pictures of the forward graph, the backward (autograd) graph, or an ONNX file.

    build viz SPEC [--view forward|backward|both|grads] [-o OUT] [--format svg|png|pdf|dot|html]
                   [--depth N] [--rankdir TB|LR] [--run DIR | --weights FILE] [--grads] [--full]
                   [--inputs FILE.npz | --data SOURCE] [--size DIM=N] [--steps N]
    build viz MODEL.onnx [-o OUT] [--format ...]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from builder.commands.common import add_spec_args, add_weight_args, load_spec
from viz.dot_render import FORMATS, INSTALL_HINT, MissingDot, side_by_side, write_picture
from viz.preparation import preparation_steps

OUT_FORMATS = FORMATS + ("html",)  # html: the interactive view (viz.html_view)

VIEWS = ("forward", "backward", "both", "grads")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "viz", help="draw the forward graph, the backward (autograd) graph, or an exported ONNX model",
        description="Draw a spec's forward graph (from its networkx graph), the autograd graph of one "
                    "training step (leaves: parameters and inputs; root: the loss; gradients flow along "
                    "the arrows), both side by side, or an exported .onnx model grouped by spec path.")
    add_spec_args(p)
    for action in p._actions:
        if action.dest == "spec":
            action.help = "path to a spec YAML file, or to an exported .onnx model"
    p.add_argument("--view", choices=VIEWS, default="forward", help="which picture (default: forward)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="output file (default: <spec name>_<view>.<format> in the current folder)")
    p.add_argument("--format", choices=OUT_FORMATS, default=None,
                   help="svg, png, pdf, dot or html (default: from OUT's suffix, else svg); image formats "
                        "also write the .dot beside the picture; html is one self-contained interactive "
                        "page (blocks expand on click, search by spec path, hover details)")
    p.add_argument("--dpi", type=int, default=None, help="resolution of png pictures (graphviz default 96)")
    p.add_argument("--depth", type=int, default=None,
                   help="block nesting depth shown (all views); deeper blocks collapse to one node and the "
                        "copies of a repeated block after the first to one 'x N' node (default: the deepest "
                        "whose picture fits in 120 nodes and 3,900 px; -1: everything, every copy)")
    p.add_argument("--rankdir", choices=("TB", "LR", "BT", "RL"), default="TB", help="layout direction")
    add_weight_args(p, random=False, when="backward and grads views: ")
    p.add_argument("--grads", action="store_true",
                   help="backward view: colour parameters and clusters by gradient norm and flag "
                        "None/zero/NaN/exploding/vanishing gradients")
    p.add_argument("--full", action="store_true",
                   help="backward view: keep bookkeeping nodes (views, reshapes, AccumulateGrad)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="backward view: rows in the batch (default 8, down to 2 for costly models); "
                        "data sequences are cut to 32 steps (16 above 20M parameters)")
    p.add_argument("--steps", type=int, default=1,
                   help="grads view: average the gradient norms over N steps of real training (default 1)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--inputs", metavar="FILE.npz",
                     help="backward and grads views: run the step on these inputs (one array per network "
                          "input, named like the spec's inputs; optional `target` for the spec's loss)")
    src.add_argument("--data", metavar="SOURCE",
                     help="backward and grads views: take the batch from this train data source instead "
                          "of the spec's train.data (e.g. one that fits the network's inputs)")
    p.add_argument("--size", action="append", default=[], metavar="DIM=N",
                   help="backward and grads views: the size of a symbolic input dim for random inputs (e.g. "
                        "--size H=64 --size W=64); default: the dim's declared example, else 32")
    p.add_argument("--seed", type=int, default=None,
                   help="backward view: seed for initial weights, dropout and random inputs "
                        "(default: the trainer's seed from train:, else 0)")
    p.set_defaults(func=run)


def parse_sizes(items) -> dict:
    """`--size H=64` items -> {"H": 64}; a malformed item is a one-line error."""
    from builder.core.errors import UserError

    sizes = {}
    for item in items or ():
        name, _, value = item.partition("=")
        if not name.strip() or not value.strip().isdigit() or int(value) < 1:
            raise UserError(f"--size expects DIM=N with N a positive integer, got {item!r}")
        sizes[name.strip()] = int(value)
    return sizes


def warn(lines) -> None:
    """What makes a picture's numbers artefacts (viz.artefacts), on the command line too."""
    for line in lines or ():
        print(f"warning: {line}", file=sys.stderr)


def _output_path(args, default_stem: str) -> tuple[Path, str]:
    out = Path(args.output) if args.output else None
    fmt = args.format
    if fmt is None:
        suffix = out.suffix.lstrip(".").lower() if out else ""
        fmt = suffix if suffix in OUT_FORMATS else "svg"
    if out is None:
        out = Path(f"{default_stem}.{fmt}")
    elif out.suffix.lstrip(".").lower() != fmt:
        known = out.suffix.lstrip(".").lower() in OUT_FORMATS
        out = out.with_suffix(f".{fmt}") if known else out.with_name(f"{out.name}.{fmt}")
    return out, fmt


def _count(dot) -> int:
    """Nodes of a picture, not counting the legend and the captions (titles drawn as text)."""
    from viz.fold import drawn

    return len(drawn(dot)[0])


def make_dot(args, interactive: bool = False):
    """The DotGraph asked for by `args`, and a one-line note about what it shows. interactive: the
    picture fully expanded, with the blocks the static picture folds marked `collapsed`."""
    from builder.core.errors import UserError

    if args.spec.lower().endswith(".onnx"):
        if args.view != "forward":
            raise UserError("an .onnx file has no backward graph: use --view forward (the default)")
        from viz.onnx_view import onnx_dot

        if not Path(args.spec).is_file():
            raise UserError(f"{args.spec}: no such ONNX file")
        try:
            dot = onnx_dot(args.spec, rankdir=args.rankdir, depth=args.depth)
            if interactive:
                from viz.html_view import clusters_deeper_than
                depth, label = dot.depth, dot.graph_attrs["label"]
                dot = onnx_dot(args.spec, rankdir=args.rankdir, depth=-1)
                dot.collapsed = clusters_deeper_than(dot, depth)
                dot.graph_attrs["label"] = label
        except Exception as e:  # protobuf decode errors and friends: a foreign or truncated file
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"{args.spec}: not a readable ONNX model ({first})") from None
        return dot, Path(args.spec).stem + "_onnx", f"{_count(dot)} nodes"

    from viz.forward import max_depth

    spec = load_spec(args)
    if args.network is None and len(spec.networks) > 1 and args.view == "forward":
        return _all_networks(spec, args, interactive)
    net = spec.network(args.network)
    stem = spec.name if net.name == "model" else f"{spec.name}_{net.name}"
    forward = backward = None
    notes = []
    if args.view in ("forward", "both"):
        forward = _forward(net.graph, args, interactive, preparation_steps(spec.train))
        notes.append(f"forward: {_count(forward)} nodes ({max_depth(net.graph)} block levels)")
    if args.view in ("backward", "both"):
        from viz.backward import backward_dot
        from viz.step import one_step

        step = one_step(spec, args.network, args.run, args.weights, args.batch_size, args.seed,
                        args.inputs, args.data, parse_sizes(args.size))
        warn(step.warnings)
        backward = backward_dot(step.trace, net.graph, full=args.full, grads=args.grads,
                                rankdir=args.rankdir, name=stem, depth=args.depth)
        if interactive:
            from viz.fold import blocks_of, folded_blocks
            depth, label = backward.depth, backward.graph_attrs["label"]
            backward = backward_dot(step.trace, net.graph, full=args.full, grads=args.grads,
                                    rankdir=args.rankdir, name=stem, depth=-1)
            backward.collapsed = folded_blocks(blocks_of(net.graph), depth)
            backward.graph_attrs["label"] = label
        backward.graph_attrs["label"] += f"\n{step.batch_note}" + "".join(f"\nWARNING: {w}" for w in step.warnings)
        notes.append(f"backward: {_count(backward)} nodes, loss {step.trace.loss:.4g} on {step.batch_note}")
    if args.view == "both":
        dot = side_by_side(forward, backward, "forward: data flows along the arrows",
                           "backward: gradients flow along the arrows, from the loss to the leaves",
                           name=f"{stem}-both")
        dot.graph_attrs["label"] = f"{stem}: forward and backward"
        dot.graph_attrs["labelloc"] = "t"
    else:
        dot = forward or backward
    return dot, f"{stem}_{args.view}", "; ".join(notes)


def _forward(g, args, interactive: bool, preparation=None):
    from viz.forward import forward_dot

    dot = forward_dot(g, depth=args.depth, rankdir=args.rankdir, preparation=preparation)
    if interactive:
        from viz.fold import blocks_of, folded_blocks
        depth, label = dot.depth, dot.graph_attrs["label"]
        dot = forward_dot(g, depth=-1, rankdir=args.rankdir, preparation=preparation)
        dot.collapsed = folded_blocks(blocks_of(g), depth)
        dot.graph_attrs["label"] = label
    return dot


def _all_networks(spec, args, interactive: bool = False):
    """The forward pictures of every network of a spec (a GAN's generator and discriminator) in one."""
    from viz.dot_render import combine

    parts = [(f"{name}:", _forward(net.graph, args, interactive), f"network {name}")
             for name, net in spec.networks.items()]
    dot = combine(parts, f"{spec.name}-forward")
    dot.graph_attrs.update(label=f"{spec.name}: forward graphs of networks {', '.join(spec.networks)}",
                           labelloc="t")
    counts = ", ".join(f"{name} {_count(g)} nodes" for name, (_, g, _) in zip(spec.networks, parts))
    return dot, f"{spec.name}_forward", f"forward: {counts}"


def _grads_chart(args) -> int:
    """--view grads: the gradient-flow chart (matplotlib), png unless OUT says svg or pdf."""
    from builder.core.errors import UserError
    from viz.grads_chart import CHART_FORMATS, draw_chart, measure

    if args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    spec = load_spec(args)
    net = spec.network(args.network)
    stem = spec.name if net.name == "model" else f"{spec.name}_{net.name}"
    out = Path(args.output) if args.output else Path(f"{stem}_grads.png")
    fmt = args.format or (out.suffix.lstrip(".").lower() or "png")
    if fmt not in CHART_FORMATS:
        raise UserError(f"--view grads draws png, svg or pdf, not {fmt!r}")
    flow = measure(spec, args.network, args.steps, args.run, args.weights, args.batch_size, args.seed,
                   args.inputs, args.data, parse_sizes(args.size))
    warn(flow.warnings)
    written = draw_chart(flow, out, f"{stem}: gradient norm per spec node", fmt, dpi=args.dpi or 100)
    print(f"wrote {written}: {len(flow.paths)} spec nodes with parameters, {len(flow.losses)} step(s) on "
          f"{flow.note}")
    return 0


def _write_html(dot, out: Path, view: str) -> Path:
    """The interactive page; a backward picture (alone or beside the forward one) reads in spec order."""
    from builder.core.io_utils import atomic_write_text
    from viz.html_view import page

    reverse = {"backward": [""], "both": ["bwd:view"]}.get(view, [])
    atomic_write_text(out, page(dot, dot.collapsed, reverse))
    return out


def run(args) -> int:
    if args.view == "grads":
        return _grads_chart(args)
    html = _output_path(args, "x")[1] == "html"
    dot, stem, note = make_dot(args, interactive=html)
    out, fmt = _output_path(args, stem)
    if html:
        print(f"wrote {_write_html(dot, out, args.view)} (interactive view): {note}")
        return 0
    try:
        written = write_picture(dot.to_dot(), out, fmt, dpi=args.dpi)
    except MissingDot as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (RuntimeError, subprocess.TimeoutExpired) as e:  # dot itself failed or took too long
        print(f"error: {e}; the .dot is at {out.with_suffix('.dot')}", file=sys.stderr)
        return 1
    except OSError as e:
        from builder.core.errors import UserError
        raise UserError(f"cannot write {out}: {e}") from None
    extra = f" (source: {out.with_suffix('.dot')})" if fmt != "dot" else ""
    print(f"wrote {written}{extra}: {note}")
    return 0


def draw(spec, view: str = "forward", out=None, fmt: str | None = None, *, grads: bool = False,
         full: bool = False, run: str | None = None, weights: str | None = None, depth: int | None = None,
         network: str | None = None, overrides: list[str] = (), dpi: int | None = None) -> Path:
    """`build viz` as a function (for the demo and scripts): returns the path written.

    Raises MissingDot (the .dot is written) when an image format is asked for and graphviz is missing."""
    import argparse

    args = argparse.Namespace(spec=str(spec), view=view, output=str(out) if out else None, format=fmt,
                              dpi=dpi, depth=depth, rankdir="TB", network=network,
                              overrides=list(overrides), safe=False, run=run, weights=weights, grads=grads,
                              full=full, batch_size=None, seed=None, inputs=None, data=None, steps=1, size=[])
    html = _output_path(args, "x")[1] == "html"
    dot, stem, _ = make_dot(args, interactive=html)
    path, fmt = _output_path(args, stem)
    if html:
        return _write_html(dot, path, view)
    return write_picture(dot.to_dot(), path, fmt, dpi=dpi)


__all__ = ["register", "run", "make_dot", "draw", "INSTALL_HINT"]
