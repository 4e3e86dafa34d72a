"""`build viz`: graphviz pictures of the forward graph, the backward (autograd) graph, or an ONNX file.

    build viz SPEC [--view forward|backward|both] [-o OUT] [--format svg|png|pdf|dot] [--depth N]
                   [--rankdir TB|LR] [--run DIR | --weights FILE] [--grads] [--full]
    build viz MODEL.onnx [-o OUT] [--format ...]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from builder.commands.common import add_spec_args, add_weight_args, load_spec
from viz.dot_render import FORMATS, INSTALL_HINT, MissingDot, side_by_side, write_picture

VIEWS = ("forward", "backward", "both")


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
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="svg, png, pdf or dot (default: from OUT's suffix, else svg); image formats also "
                        "write the .dot beside the picture")
    p.add_argument("--dpi", type=int, default=None, help="resolution of png pictures (graphviz default 96)")
    p.add_argument("--depth", type=int, default=None,
                   help="forward and ONNX views: block nesting depth shown; deeper blocks collapse to one node "
                        "(default: the deepest that keeps the picture within 120 nodes; -1: everything)")
    p.add_argument("--rankdir", choices=("TB", "LR", "BT", "RL"), default="TB", help="layout direction")
    add_weight_args(p, random=False, when="backward view: ")
    p.add_argument("--grads", action="store_true",
                   help="backward view: colour parameters and clusters by gradient norm and flag "
                        "None/zero/NaN/exploding/vanishing gradients")
    p.add_argument("--full", action="store_true",
                   help="backward view: keep bookkeeping nodes (views, reshapes, AccumulateGrad)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="backward view: rows in the batch (default 8, down to 2 for costly models); "
                        "data sequences are cut to 32 steps (16 above 20M parameters)")
    p.add_argument("--seed", type=int, default=None,
                   help="backward view: seed for initial weights, dropout and random inputs "
                        "(default: the trainer's seed from train:, else 0)")
    p.set_defaults(func=run)


def _output_path(args, default_stem: str) -> tuple[Path, str]:
    out = Path(args.output) if args.output else None
    fmt = args.format
    if fmt is None:
        suffix = out.suffix.lstrip(".").lower() if out else ""
        fmt = suffix if suffix in FORMATS else "svg"
    if out is None:
        out = Path(f"{default_stem}.{fmt}")
    elif out.suffix.lstrip(".").lower() != fmt:
        known = out.suffix.lstrip(".").lower() in FORMATS
        out = out.with_suffix(f".{fmt}") if known else out.with_name(f"{out.name}.{fmt}")
    return out, fmt


def _count(dot) -> int:
    """Nodes of a picture, not counting the legend."""
    return sum(1 for n in dot.node_attrs if "#legend:" not in n)


def make_dot(args):
    """The DotGraph asked for by `args`, and a one-line note about what it shows."""
    from builder.errors import UserError

    if args.spec.lower().endswith(".onnx"):
        if args.view != "forward":
            raise UserError("an .onnx file has no backward graph: use --view forward (the default)")
        from viz.onnx_view import onnx_dot

        if not Path(args.spec).is_file():
            raise UserError(f"{args.spec}: no such ONNX file")
        try:
            dot = onnx_dot(args.spec, rankdir=args.rankdir, depth=args.depth)
        except Exception as e:  # protobuf decode errors and friends: a foreign or truncated file
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"{args.spec}: not a readable ONNX model ({first})") from None
        return dot, Path(args.spec).stem + "_onnx", f"{_count(dot)} nodes"

    from viz.forward import forward_dot, max_depth

    spec = load_spec(args)
    if args.network is None and len(spec.networks) > 1 and args.view == "forward":
        return _all_networks(spec, args)
    net = spec.network(args.network)
    stem = spec.name if net.name == "model" else f"{spec.name}_{net.name}"
    forward = backward = None
    notes = []
    if args.view in ("forward", "both"):
        forward = forward_dot(net.graph, depth=args.depth, rankdir=args.rankdir)
        notes.append(f"forward: {_count(forward)} nodes ({max_depth(net.graph)} block levels)")
    if args.view in ("backward", "both"):
        from viz.backward import backward_dot
        from viz.step import one_step

        step = one_step(spec, args.network, args.run, args.weights, args.batch_size, args.seed)
        backward = backward_dot(step.trace, net.graph, full=args.full, grads=args.grads,
                                rankdir=args.rankdir, name=stem)
        backward.graph_attrs["label"] += f"\n{step.batch_note}"
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


def _all_networks(spec, args):
    """The forward pictures of every network of a spec (a GAN's generator and discriminator) in one."""
    from viz.dot_render import combine
    from viz.forward import forward_dot

    parts = [(f"{name}:", forward_dot(net.graph, depth=args.depth, rankdir=args.rankdir), f"network {name}")
             for name, net in spec.networks.items()]
    dot = combine(parts, f"{spec.name}-forward")
    dot.graph_attrs.update(label=f"{spec.name}: forward graphs of networks {', '.join(spec.networks)}",
                           labelloc="t")
    counts = ", ".join(f"{name} {_count(g)} nodes" for name, (_, g, _) in zip(spec.networks, parts))
    return dot, f"{spec.name}_forward", f"forward: {counts}"


def run(args) -> int:
    dot, stem, note = make_dot(args)
    out, fmt = _output_path(args, stem)
    try:
        written = write_picture(dot.to_dot(), out, fmt, dpi=args.dpi)
    except MissingDot as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (RuntimeError, subprocess.TimeoutExpired) as e:  # dot itself failed or took too long
        print(f"error: {e}; the .dot is at {out.with_suffix('.dot')}", file=sys.stderr)
        return 1
    except OSError as e:
        from builder.errors import UserError
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
                              full=full, batch_size=None, seed=None)
    dot, stem, _ = make_dot(args)
    path, fmt = _output_path(args, stem)
    return write_picture(dot.to_dot(), path, fmt, dpi=dpi)


__all__ = ["register", "run", "make_dot", "draw", "INSTALL_HINT"]
