"""`build viz SPEC --view grads`: the gradient-flow chart.

One bar per spec node that owns trainable parameters, in forward order: the norm of its parameters'
gradient, on a log axis, for one step or over `--steps N` steps of real training (the spec's optimizer
steps between them; the bar is the mean over the steps, the tick the largest). Flags are judged as the
backward view judges them (viz.grad_heat: against the network's own Scale); a shaded band marks a flag's
range only when some bar falls in it. Bars with a flag take its alarm colour; the others one healthy
colour. What may make the numbers artefacts (viz.artefacts) heads the title.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch

from builder.core.types import records
from viz.grad_heat import EXPLODING_RATIO, FLAG_STYLE, VANISHING_RATIO, Scale, judge
from viz.artefacts import watch
from viz.step import set_up, step_threads

HEALTHY = "#41ab5d"
CHART_FORMATS = ("png", "svg", "pdf")


@dataclass
class GradFlow:
    paths: list  # spec nodes with trainable parameters, in forward order
    norms: dict  # path -> [norm or None, one per step]
    losses: list  # loss of each step
    note: str  # where the batches came from
    loss_name: str
    warnings: list = None  # why the numbers may be artefacts (viz.artefacts), for the title and the CLI

    def mean(self, path: str) -> float | None:
        vals = self.norms[path]
        if any(v is None for v in vals):
            return None
        return sum(vals) / len(vals)

    def max(self, path: str) -> float | None:
        vals = self.norms[path]
        return None if any(v is None for v in vals) else max(vals)


def _owner(name: str, paths: set) -> str:
    owner = name.rpartition(".")[0]
    while owner and owner not in paths:
        owner = owner.rpartition(".")[0]
    return owner


def measure(spec, network=None, steps: int = 1, run=None, weights=None, batch_size=None, seed=None,
            inputs_file=None, data=None, sizes=None) -> GradFlow:
    """Gradient norms per spec node over `steps` steps of real training (optimizer steps between them)."""
    from builder.training.optim import make_optimizer

    threads = torch.get_num_threads()
    torch.set_num_threads(step_threads())
    try:
        s = set_up(spec, network, run, weights, batch_size, seed, steps, inputs_file, data, sizes)
        nodes = [r.path for r in records(s.net.graph) if r.op != "input"]
        owned: dict[str, list] = {}
        for name, p in s.module.named_parameters():
            if p.requires_grad:
                owned.setdefault(_owner(name, set(nodes)), []).append(p)
        paths = [n for n in nodes if n in owned]
        optimizer = make_optimizer(s.module, s.cfg.optimizer if s.cfg else None) if steps > 1 else None
        norms: dict[str, list] = {p: [] for p in paths}
        with watch(s.module) as seen:
            losses = _steps(s, paths, owned, norms, optimizer, steps)
        return GradFlow(paths, norms, losses, s.described(seen), s.loss_name, s.warnings(seen))
    finally:
        torch.set_num_threads(threads)


def _steps(s, paths, owned, norms, optimizer, steps) -> list:
    """Run the steps, appending each node's gradient norm to `norms`; the losses."""
    from builder.core.errors import UserError

    losses = []
    for k, (inputs, target) in enumerate(s.batches):
        s.module.zero_grad(set_to_none=True)
        try:
            loss = s.loss_fn(s.module(*inputs), target, inputs)
            loss.backward()
        except (RuntimeError, ValueError) as e:
            raise UserError(f"step {k + 1} on {s.note} failed: {str(e).splitlines()[0]}") from None
        losses.append(float(loss.detach()))
        for path in paths:
            grads = [p.grad for p in owned[path]]
            norms[path].append(None if all(g is None for g in grads) else math.sqrt(
                sum(float(torch.linalg.vector_norm(g.float())) ** 2 for g in grads if g is not None)))
        if optimizer is not None and k < steps - 1:
            optimizer.step()
    return losses


def scale_of(flow: GradFlow) -> Scale:
    return Scale.of({p: flow.mean(p) for p in flow.paths})  # paths are in forward order


def flags(flow: GradFlow) -> dict:
    """path -> flag of its mean norm (None when healthy), judged as the backward view judges."""
    scale = scale_of(flow)
    return {p: judge(flow.mean(p), scale, p) for p in flow.paths}


def draw_chart(flow: GradFlow, out: Path, title: str, fmt: str = "png", dpi: int = 100) -> Path:
    """Write the chart (matplotlib, no display needed) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(flow.paths)
    width = min(39.0, max(6.0, 0.3 * n + 2.0))  # at most about 4,000 px wide at 100 dpi
    fig, ax = plt.subplots(figsize=(width, 5.5))
    flagged = flags(flow)
    means = [flow.mean(p) for p in flow.paths]
    finite = [m for m in means if m is not None and math.isfinite(m) and m > 0]
    scale = scale_of(flow)
    shown = set(flagged.values())
    floor = min(finite + ([scale.vanishing_below] if "vanishing" in shown else []) + [1e-8]) / 10
    top = max(finite + ([scale.exploding_above] if "exploding" in shown else [])) * 10
    heights, colors = [], []
    for p, m in zip(flow.paths, means):
        flag = flagged[p]
        colors.append(FLAG_STYLE[flag]["fillcolor"] if flag else HEALTHY)
        heights.append(m if m is not None and math.isfinite(m) and m > 0 else floor * 2)
    xs = range(n)
    ax.bar(xs, [h - floor for h in heights], bottom=floor, color=colors, edgecolor="black", linewidth=0.4)
    maxes = [flow.max(p) for p in flow.paths]
    ax.scatter([x for x, m in zip(xs, maxes) if m and math.isfinite(m)],
               [m for m in maxes if m and math.isfinite(m)], marker="_", s=120, color="black", zorder=3,
               label="largest over the steps" if len(flow.losses) > 1 else None)
    for x, p in zip(xs, flow.paths):
        if flagged[p] in ("none", "zero", "nan"):
            ax.text(x, floor * 3, {"none": "none", "zero": "zero", "nan": "NaN"}[flagged[p]], rotation=90,
                    ha="center", va="bottom", fontsize=7)
    if "exploding" in shown:  # a band only for a flag some bar has: no alarm colour where all is well
        ax.axhspan(scale.exploding_above, top, color=FLAG_STYLE["exploding"]["fillcolor"], alpha=0.12,
                   label=f"exploding (> {EXPLODING_RATIO:g} x 90th percentile {scale.high:.2g})")
    if "vanishing" in shown:
        ax.axhspan(floor, scale.vanishing_below, color=FLAG_STYLE["vanishing"]["fillcolor"], alpha=0.12,
                   label=f"vanishing (< {VANISHING_RATIO:g} x 90th percentile {scale.high:.2g})")
    ax.set_yscale("log")
    ax.set_ylim(floor, top)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(flow.paths, rotation=90, fontsize=8 if n < 60 else 6)
    ax.set_ylabel("gradient norm of the node's parameters (log)")
    steps = len(flow.losses)
    what = "one step" if steps == 1 else f"mean of {steps} training steps (tick: largest)"
    sub = f"{what}; {flow.note}; {flow.loss_name} {flow.losses[0]:.4g}" + (
        f" -> {flow.losses[-1]:.4g}" if steps > 1 else "")
    warn = [f"WARNING: {w}" for w in (flow.warnings or [])]
    lines = [title] + textwrap.wrap(sub, int(width * 11)) + [x for w in warn for x in textwrap.wrap(w, int(width * 11))]
    ax.set_title("\n".join(lines), fontsize=10)
    if warn:  # a title that warns is dark red, so the warning is not read past
        ax.title.set_color("#b2182b")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    from builder.core.io_utils import atomic_output

    out = Path(out)
    try:
        with atomic_output(out, "the chart") as tmp:  # a failed write leaves no half chart behind
            fig.savefig(tmp, format=fmt, dpi=dpi)
    finally:
        plt.close(fig)
    return out
