"""Gradient-norm heat colours (one colour per decade, fixed scale) and the flags of unhealthy gradients.

The scale is absolute, so pictures of different networks compare: below 1e-7 is the coldest blue,
1e+1 and above the hottest red. Flags: 'none' (no gradient reached the parameter), 'zero', 'nan'
(NaN or Inf), 'exploding' (norm above EXPLODING) and 'vanishing' (norm below VANISHING_RATIO times the
largest parameter gradient norm of the network).
"""

from __future__ import annotations

import math

from viz.dot_render import DotGraph

LOW_EXP = -7  # the first bucket holds norms below 1e-7, the last norms of 10 and above
PALETTE = [  # RdYlBu reversed: cold (vanishing) -> hot (large)
    "#313695", "#4575b4", "#74add1", "#abd9e9", "#e0f3f8",
    "#fee090", "#fdae61", "#f46d43", "#d73027", "#a50026",
]
DARK = {"#313695", "#4575b4", "#d73027", "#a50026"}  # buckets that need white text
EXPLODING = 1e3
VANISHING_RATIO = 1e-4
FLAG_STYLE = {
    "none": {"fillcolor": "#d9d9d9", "style": "filled,dashed", "fontcolor": "black"},
    "zero": {"fillcolor": "black", "style": "filled", "fontcolor": "white"},
    "nan": {"fillcolor": "#ff00ff", "style": "filled,bold", "peripheries": "2", "fontcolor": "black"},
    "exploding": {"style": "filled,bold", "penwidth": "4", "color": "#ff0000"},
    "vanishing": {"style": "filled,bold", "penwidth": "3", "color": "#08306b"},
}
FLAG_TEXT = {"none": "NO GRADIENT (None)", "zero": "ZERO GRADIENT", "nan": "NaN/Inf GRADIENT",
             "exploding": "EXPLODING GRADIENT", "vanishing": "VANISHING GRADIENT"}


def bucket(norm: float) -> int:
    """Index into PALETTE of a finite positive norm: one bucket per decade, clamped at both ends."""
    e = math.floor(math.log10(norm)) if norm > 0 else LOW_EXP - 1
    return min(max(e - LOW_EXP + 1, 0), len(PALETTE) - 1)


def heat_color(norm: float) -> str:
    return PALETTE[bucket(norm)]


def bucket_range(i: int) -> str:
    lo, hi = LOW_EXP + i - 1, LOW_EXP + i
    if i == 0:
        return f"< 1e{hi:+d}"
    if i == len(PALETTE) - 1:
        return f">= 1e{lo:+d}"
    return f"1e{lo:+d} .. 1e{hi:+d}"


def judge(norm: float | None, largest: float) -> str | None:
    """The flag of one gradient norm, given the largest finite parameter gradient norm of the network."""
    if norm is None:
        return "none"
    if not math.isfinite(norm):
        return "nan"
    if norm == 0.0:
        return "zero"
    if norm > EXPLODING:
        return "exploding"
    if largest > 0 and norm < VANISHING_RATIO * largest:
        return "vanishing"
    return None


def heat_style(norm: float | None, flag: str | None) -> dict:
    """Node attributes for a leaf coloured by its gradient norm and flag."""
    if flag in ("none", "zero", "nan"):
        return dict(FLAG_STYLE[flag])
    color = heat_color(norm)
    style = {"fillcolor": color, "style": "filled", "fontcolor": "white" if color in DARK else "black"}
    if flag:
        style.update(FLAG_STYLE[flag])
    return style


def add_legend(dot: DotGraph, prefix: str = "#legend") -> None:
    """Swatches, one per decade (hot to cold), then one per flag, in a cluster named `#legend`
    ('#' never starts a spec path)."""
    path = [prefix]
    dot.cluster(path, {prefix: "gradient norm |grad| (log scale)"},
                {prefix: {"style": "rounded", "color": "gray60", "fontsize": "10"}})
    ids = []
    for i in reversed(range(len(PALETTE))):
        nid = f"{prefix}:{i}"
        color = PALETTE[i]
        dot.add_node(nid, path, label=bucket_range(i), shape="box", style="filled", fillcolor=color,
                     fontcolor="white" if color in DARK else "black", width="1.6", height="0.25",
                     fontsize="9")
        ids.append(nid)
    for flag, text in FLAG_TEXT.items():
        nid = f"{prefix}:{flag}"
        attrs = {"fillcolor": "white", "style": "filled", "fontcolor": "black"}
        attrs.update(FLAG_STYLE[flag])
        dot.add_node(nid, path, label=text, shape="box", width="1.6", height="0.25", fontsize="9", **attrs)
        ids.append(nid)
    rows = 5  # three columns of five: hot half, cold half, flags
    for col in range(0, len(ids), rows):
        column = ids[col:col + rows]
        for a, b in zip(column, column[1:]):
            dot.add_edge(a, b, style="invis")
