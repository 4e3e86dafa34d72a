"""Gradient-norm colours and the flags of unhealthy gradients.

A healthy norm gets a shade of one sequential scale (pale green for small norms, dark green for large
ones; one shade per decade from below 1e-6 to 10 and above), fixed so that pictures of different
networks compare. Only a flagged state uses an alarm colour: 'none' (no gradient reached the parameter,
grey dashed), 'zero' (black), 'nan' (NaN or Inf, magenta), 'vanishing' (blue) and 'exploding' (red).
The legend is one compact table.

Vanishing and exploding are judged against the network's own typical sizes (a Scale), as the notes define
them: gradients that shrink or grow across the layers, not a size that is large or small in itself. A
norm is vanishing below VANISHING_RATIO times the network's 90th-percentile norm (not its largest: one
huge norm must not paint the rest blue), and exploding above EXPLODING_RATIO times that norm (far above
even the network's large ones), or above EXPLODING whatever the network. The 90th percentile sits at
the loss end of a network whose gradients shrink towards the input, so a vanishing stack does not make
its healthy last layer look exploding. A healthy network at initialisation trips neither (every zoo spec
at its example size is checked by tests/test_viz_truth.py); the notes' deep sigmoid stack is vanishing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from viz.dot_render import DotGraph, HtmlLabel

LOW_EXP = -6  # the first shade holds norms below 1e-6, the last norms of 10 and above
PALETTE = [  # ColorBrewer Greens: a sequential scale, no alarm in it
    "#f7fcf5", "#e5f5e0", "#c7e9c0", "#a1d99b", "#74c476", "#41ab5d", "#238b45", "#006d2c", "#00441b",
]
DARK = {"#238b45", "#006d2c", "#00441b"}  # shades that need white text
EXPLODING = 1e6  # exploding whatever the network
EXPLODING_RATIO = 1e4  # exploding above this many times the network's 90th-percentile norm
VANISHING_RATIO = 1e-5  # vanishing below this many times the network's 90th-percentile norm
FLAG_STYLE = {
    "none": {"fillcolor": "#d9d9d9", "style": "filled,dashed", "fontcolor": "black"},
    "zero": {"fillcolor": "black", "style": "filled", "fontcolor": "white"},
    "nan": {"fillcolor": "#ff00ff", "style": "filled,bold", "peripheries": "2", "fontcolor": "black"},
    "exploding": {"fillcolor": "#e31a1c", "style": "filled,bold", "penwidth": "3", "color": "#67000d",
                  "fontcolor": "white"},
    "vanishing": {"fillcolor": "#2166ac", "style": "filled,bold", "penwidth": "3", "color": "#053061",
                  "fontcolor": "white"},
}
FLAG_TEXT = {"none": "NO GRADIENT (None)", "zero": "ZERO GRADIENT", "nan": "NaN/Inf GRADIENT",
             "exploding": "EXPLODING GRADIENT", "vanishing": "VANISHING GRADIENT"}
LEGEND_TEXT = {"none": "none", "zero": "zero", "nan": "NaN/Inf",
               "exploding": f"exploding (&gt; {EXPLODING_RATIO:g} x 90th pct)",
               "vanishing": f"vanishing (&lt; {VANISHING_RATIO:g} x 90th pct)"}  # HTML-like label text


def bucket(norm: float) -> int:
    """Index into PALETTE of a finite positive norm: one shade per decade, clamped at both ends."""
    e = math.floor(math.log10(norm)) if norm > 0 else LOW_EXP - 1
    return min(max(e - LOW_EXP + 1, 0), len(PALETTE) - 1)


def heat_color(norm: float) -> str:
    return PALETTE[bucket(norm)]


def bucket_range(i: int) -> str:
    """The legend's text for shade i: where its decade starts ('1e-3' holds 1e-3 .. 1e-2)."""
    lo = LOW_EXP + i - 1
    if i == 0:
        return f"&lt; 1e{lo + 1:+d}"
    if i == len(PALETTE) - 1:
        return f"&#8805; 1e{lo:+d}"
    return f"1e{lo:+d}"


@dataclass(frozen=True)
class Scale:
    """The typical gradient sizes of one network, what its flags are judged against, and (given the nodes
    in forward order) the vanished prefix: the layers from the input up to the first one whose gradient
    is not vanishingly small. Vanishing means the gradient died on its way back to the input (the notes:
    a product of many small Jacobians), so a small norm is flagged only inside that prefix: a branch damped
    on purpose deeper in (ConvNeXt's layer scale of 1e-6, whose residual stream still carries the gradient
    to the stem) is not a vanishing layer."""
    high: float = 0.0  # the 90th percentile of the finite, nonzero parameter gradient norms
    vanished: frozenset | None = None  # spec paths in the vanished prefix (None: no order known)
    alive: frozenset = frozenset()  # spec paths after it

    @classmethod
    def of(cls, norms) -> "Scale":
        """From node norms: a {spec path: norm} mapping in forward order (the prefix is found), or a plain
        iterable of norms (every small norm counts)."""
        values = list(norms.values()) if isinstance(norms, dict) else list(norms)
        finite = sorted(n for n in values if n is not None and math.isfinite(n) and n > 0)
        high = finite[round(0.9 * (len(finite) - 1))] if finite else 0.0
        if not isinstance(norms, dict):
            return cls(high=high)
        paths = list(norms)
        below = VANISHING_RATIO * high
        cut = next((i for i, p in enumerate(paths) if norms[p] is None or not math.isfinite(norms[p])
                    or norms[p] >= below), len(paths))
        return cls(high=high, vanished=frozenset(paths[:cut]), alive=frozenset(paths[cut:]))

    @property
    def vanishing_below(self) -> float:
        return VANISHING_RATIO * self.high

    @property
    def exploding_above(self) -> float:
        return min(EXPLODING, EXPLODING_RATIO * self.high) if self.high else EXPLODING

    def in_vanished_prefix(self, path: str | None) -> bool:
        """Whether a node (or a block: all the nodes inside it) lies in the vanished prefix."""
        if self.vanished is None or path is None:
            return True
        if path in self.vanished or path in self.alive:
            return path in self.vanished
        inside = lambda p: p.startswith(path + ".")  # noqa: E731
        return any(inside(p) for p in self.vanished) and not any(inside(p) for p in self.alive)


def judge(norm: float | None, scale: Scale, path: str | None = None) -> str | None:
    """The flag of one gradient norm (of spec node or block `path`, when known), given its network's Scale
    (None: healthy)."""
    if norm is None:
        return "none"
    if not math.isfinite(norm):
        return "nan"
    if norm == 0.0:
        return "zero"
    if norm > scale.exploding_above:
        return "exploding"
    if norm < scale.vanishing_below and scale.in_vanished_prefix(path):
        return "vanishing"
    return None


def node_norms(trace, graph=None) -> dict:
    """Spec path -> the gradient norm of all its trainable parameters together (what a layer receives), in
    the graph's forward order when `graph` is given; a path with a parameter no gradient reached, or a
    non-finite one, is None."""
    squares: dict = {}
    for lf in trace.leaves.values():
        if lf.kind == "param" and lf.requires_grad:
            norm = lf.grad.norm if lf.grad is not None else None
            ok = norm is not None and math.isfinite(norm) and squares.get(lf.path, 0.0) is not None
            squares[lf.path] = squares.get(lf.path, 0.0) + norm * norm if ok else None
    norms = {p: (math.sqrt(v) if v is not None else None) for p, v in squares.items()}
    if graph is None:
        return norms
    order = [p for p in graph.nodes if p in norms]
    return {**{p: norms[p] for p in order}, **{p: v for p, v in norms.items() if p not in order}}


def param_scale(trace, graph=None) -> Scale:
    """The Scale of a recorded step (viz.autograd_walk): of its spec nodes' gradient norms, in forward
    order when `graph` is given (else every small norm counts), as the grads chart measures them, so both
    views flag the same layers."""
    norms = node_norms(trace, graph)
    return Scale.of(norms if graph is not None else norms.values())


def leaf_flag(leaf, scale: Scale, nodes: dict) -> str | None:
    """The flag of one parameter: none, zero and NaN are its own; vanishing and exploding are its layer's
    (a Transformer's key bias gets no gradient by design, since softmax ignores what it adds to every
    score: that is not a vanishing layer)."""
    norm = leaf.grad.norm if leaf.grad is not None else None
    flag = judge(norm, scale, leaf.path or None)
    if flag in ("vanishing", "exploding"):
        node = nodes.get(leaf.path)
        return judge(node if node is not None else norm, scale, leaf.path or None)
    return flag


def heat_style(norm: float | None, flag: str | None) -> dict:
    """Node attributes for a gradient norm: its shade of the scale, or its flag's alarm colour."""
    if flag:
        return dict(FLAG_STYLE[flag])
    color = heat_color(norm)
    return {"fillcolor": color, "style": "filled", "fontcolor": "white" if color in DARK else "black"}


def _cell(text: str, fill: str, font: str = "black", extra: str = "") -> str:
    return (f'<TD BGCOLOR="{fill}" {extra}><FONT POINT-SIZE="8" COLOR="{font}">{text}</FONT></TD>')


def legend_label() -> HtmlLabel:
    """One small table: the scale's shades left to right (small to large), then the flags."""
    shades = "".join(_cell(bucket_range(i), c, "white" if c in DARK else "black") for i, c in enumerate(PALETTE))
    flags = "".join(_cell(LEGEND_TEXT[f], st["fillcolor"], st.get("fontcolor", "black"),
                          'STYLE="dashed"' if "dashed" in st.get("style", "") else "")
                    for f, st in FLAG_STYLE.items())
    n = len(PALETTE)
    return HtmlLabel(
        f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="2">'
        f'<TR><TD COLSPAN="{n}"><FONT POINT-SIZE="9">gradient norm |grad|: one shade per decade, from</FONT></TD></TR>'
        f'<TR>{shades}</TR>'
        f'<TR><TD COLSPAN="{n}"><TABLE BORDER="0" CELLBORDER="1" CELLSPACING="2" CELLPADDING="2"><TR>'
        f'<TD BORDER="0"><FONT POINT-SIZE="9">flagged:</FONT></TD>{flags}</TR></TABLE></TD></TR></TABLE>')


def add_legend(dot: DotGraph, prefix: str = "#legend") -> None:
    """The legend: one node (in a cluster named `#legend`; '#' never starts a spec path)."""
    dot.cluster([prefix], {prefix: ""}, {prefix: {"style": "invis"}})
    dot.add_node(f"{prefix}:0", [prefix], label=legend_label(), shape="plain")
