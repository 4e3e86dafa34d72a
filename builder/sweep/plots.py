"""The sweep's parallel-coordinates picture, drawn here rather than by Optuna: Optuna's colours its worst
trial near-white (invisible on its grey background) and prints log-axis minor labels over each other at a
handful of trials. Here every line is dark enough to read on white (WCAG contrast >= MIN_CONTRAST), each
axis carries at most a few value labels, and axis names are wrapped or turned until no two labels overlap.
Also the note every importances plot carries: how many trials it rests on.
"""
from __future__ import annotations

import math

MIN_CONTRAST = 3.0  # against the white background, for every line colour (WCAG's minimum for graphics)
CMAP_RANGE = (0.0, 0.55)  # of viridis: dark purple to teal; its yellow end is too light on white
FEW_TRIALS = 20  # below this many complete trials, importances are a rough guide at best
MAX_TICKS = 5


def relative_luminance(rgb) -> float:
    def channel(c):
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    """WCAG contrast ratio of two colours (1: the same, 21: black on white)."""
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def line_colormap():
    from matplotlib import colormaps
    from matplotlib.colors import LinearSegmentedColormap

    base = colormaps["viridis"]
    low, high = CMAP_RANGE
    return LinearSegmentedColormap.from_list("sweep_lines", [base(low + (high - low) * i / 63) for i in range(64)])


def importance_title(n_complete: int) -> str:
    few = " (few: a rough guide)" if n_complete < FEW_TRIALS else ""
    return f"Hyperparameter importances\nfrom {n_complete} complete trial{'s' * (n_complete != 1)}{few}"


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _axis(name, values, kind, log, choices=()):
    """(positions in [0, 1] per value (nan where absent), [(position, label)]) of one axis."""
    if kind == "choice":
        present = [c for c in choices if c in values] or list(dict.fromkeys(v for v in values if v is not None))
        spot = {c: (i / (len(present) - 1) if len(present) > 1 else 0.5) for i, c in enumerate(present)}
        every = max(1, math.ceil(len(present) / 8))
        ticks = [(spot[c], str(c)[:12]) for c in present[::every]]
        return [spot.get(v, math.nan) for v in values], ticks
    numbers = [float(v) for v in values if v is not None]
    if not numbers:
        return [math.nan] * len(values), []
    log = log and min(numbers) > 0
    fwd = math.log10 if log else (lambda x: x)
    lo, hi = fwd(min(numbers)), fwd(max(numbers))
    if hi - lo < 1e-12:
        return [0.5 if v is not None else math.nan for v in values], [(0.5, _fmt(min(numbers)))]
    pos = [(fwd(float(v)) - lo) / (hi - lo) if v is not None else math.nan for v in values]
    ticks, seen = [], set()
    for i in range(MAX_TICKS):
        raw = lo + (hi - lo) * i / (MAX_TICKS - 1)
        value = 10 ** raw if log else raw
        label = str(int(round(value))) if kind == "int" else _fmt(value)
        if label not in seen:
            seen.add(label)
            ticks.append((i / (MAX_TICKS - 1), label))
    return pos, ticks


def _wrap(name: str, width=14) -> str:
    if len(name) <= width or "." not in name:
        return name
    head, _, tail = name.rpartition(".")
    return f"{head}.\n{tail}"


def overlapping(texts, renderer) -> list:
    """Pairs of visible, non-empty texts whose drawn boxes intersect."""
    boxes = [(t, t.get_window_extent(renderer)) for t in texts if t.get_visible() and t.get_text().strip()]
    return [(a.get_text(), b.get_text()) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:]
            if ba.overlaps(bb)]


def all_texts(fig) -> list:
    from matplotlib.text import Text
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def parallel_figure(trials, cfg):
    """A matplotlib Figure: one vertical axis for the metric and one per swept key; one line per complete
    trial, coloured by its metric, the best drawn last and thickest."""
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    done = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)]
    values = [t.value for t in done]
    columns = [_axis(cfg.metric, values, "float", False)]
    names = [cfg.metric] + [d.key for d in cfg.space]
    for d in cfg.space:
        columns.append(_axis(d.key, [t.params.get(d.key) for t in done], d.kind, d.log, d.choices))
    n = len(columns)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * n + 2.5), 4.5))
    ax.set_facecolor("white")
    cmap = line_colormap()
    norm = Normalize(min(values), max(values) if max(values) > min(values) else min(values) + 1)
    sign = -1 if cfg.direction == "maximize" else 1
    order = sorted(range(len(done)), key=lambda i: sign * values[i], reverse=True)  # best last, on top
    for rank, i in enumerate(order):
        best = rank == len(order) - 1
        ax.plot(range(n), [col[0][i] for col in columns], color=cmap(norm(values[i])),
                linewidth=2.6 if best else 1.4, alpha=1.0, zorder=3 if best else 2)
    for x, (_, ticks) in enumerate(columns):
        ax.axvline(x, color="black", linewidth=1, zorder=1)
        right = x < n - 1  # labels right of each axis; the last axis's go left (the colour bar is right)
        for y, label in ticks:
            ax.text(x + (0.03 if right else -0.03), y, label, ha="left" if right else "right", va="center",
                    fontsize=8, zorder=4, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    ax.set_xlim(-0.15, n - 1 + 0.15)
    ax.set_ylim(-0.06, 1.06)
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xticks(range(n))
    ax.set_xticklabels([_wrap(name) for name in names], fontsize=9)
    ax.tick_params(axis="x", length=0)
    ax.set_title(f"Parallel coordinates: {len(done)} complete trial{'s' * (len(done) != 1)}", fontsize=11)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02, label=cfg.metric)
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    if overlapping(ax.get_xticklabels(), renderer):  # many or long names: turn them
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
        fig.tight_layout()
    return fig
