"""The backward picture folded like the forward one (viz.fold): blocks deeper than the depth become one
box, the later copies of a repeated block one `x N` summary node that lists each copy's gradient norm.

A folded node carries what the clusters inside it showed: how many operation nodes and parameters it
holds and the norm of their gradients (coloured and flagged with --grads), so a vanishing layer stays
visible even when its block is folded.
"""

from __future__ import annotations

import math

from builder.core.types import records
from viz.autograd_walk import BackwardTrace
from viz.dot_render import DotGraph
from viz.fold import block_chain, block_levels, blocks_of, fold_of, like_of, pick_depth, repeat_id, summarised, summary_words
from viz.grad_heat import FLAG_TEXT, heat_style, judge, param_scale
from viz.labels import format_count


def _norm_text(norm: float | None) -> str:
    if norm is None:
        return "None"
    return f"{norm:.2e}" if math.isfinite(norm) else str(norm)


def _inside(graph, blocks: dict) -> dict[str, set]:
    """Block path -> the spec paths of the nodes inside it (at any depth)."""
    out: dict[str, set] = {b: set() for b in blocks}
    for r in records(graph):
        for b in block_chain(blocks, r.block):
            out[b].add(r.path)
    return out


class _Sums:
    """Operation counts, parameter counts and gradient norms per spec path, summed over paths."""

    def __init__(self, trace: BackwardTrace, shown_ops):
        self.ops: dict[str, int] = {}
        for i, op in trace.ops.items():
            if i in shown_ops:
                self.ops[op.path] = self.ops.get(op.path, 0) + 1
        self.params: dict[str, list] = {}
        for leaf in trace.leaves.values():
            if leaf.kind == "param" and leaf.requires_grad:
                self.params.setdefault(leaf.path, []).append(leaf)

    def total(self, paths: set) -> tuple[int, int, float | None]:
        """(operation nodes, parameters, gradient norm) of the spec paths in `paths`."""
        n_ops = sum(self.ops.get(p, 0) for p in paths)
        leaves = [lf for p in paths for lf in self.params.get(p, [])]
        n_params = sum(math.prod(lf.shape) for lf in leaves)
        norms = [lf.grad.norm if lf.grad is not None else None for lf in leaves]
        if not leaves or any(n is None for n in norms):
            return n_ops, n_params, None
        return n_ops, n_params, math.sqrt(sum(n * n for n in norms))


def folds_for(trace: BackwardTrace, graph, depth: int, shown_ops, grads: bool = False) -> dict:
    """Cluster name -> (node id, attrs) of every block the backward picture folds at `depth`."""
    blocks = blocks_of(graph)
    levels = block_levels(blocks)
    inside = _inside(graph, blocks)
    sums = _Sums(trace, shown_ops)
    scale = param_scale(trace, graph)
    folds = {}
    for b in blocks:
        fold = fold_of(blocks, levels, block_chain(blocks, b), depth)
        if fold is None:
            continue
        kind, unit = fold
        if kind == "box" and unit == b:
            n_ops, n_params, norm = sums.total(inside[b])
            info = blocks[b]
            head = info.get("block") or "block"
            if info.get("repeat"):
                head += f" x {info['repeat']}"
            lines = [b, head, f"{n_ops} operation nodes, {format_count(n_params)} params",
                     f"|grad| {_norm_text(norm)}"]
        elif kind == "repeat" and unit == b:
            later = summarised(blocks, unit)
            if b != later[0]:  # one summary node for the later copies alike one drawn copy: made at the first
                folds[b] = (repeat_id(blocks, unit), {})
                continue
            like = like_of(blocks, unit)
            n_ops, n_params, norm = sums.total(set().union(*(inside[c] for c in later)))
            per_copy = [f"{c.rsplit('.', 1)[1]}: {_norm_text(sums.total(inside[c])[2])}" for c in [like] + later]
            parent = blocks[unit].get("parent") or ""
            lines = [summary_words(blocks, unit), f"{blocks[parent].get('block') or 'block'} x {len(later)} more "
                     f"(like {like})", f"{n_ops} operation nodes, {format_count(n_params)} params",
                     "|grad| of each copy:"]
            lines += ["  ".join(per_copy[i:i + 3]) for i in range(0, len(per_copy), 3)]
        else:
            continue
        attrs = {"shape": "box3d", "style": "filled", "fillcolor": "#fff7cc"}
        if grads and n_params:  # coloured like a parameter: by the norm of the gradients inside
            flag = judge(norm, scale, b)
            attrs.update(heat_style(norm, flag))
            if flag:
                lines.append(FLAG_TEXT[flag])
        folds[b] = (b if kind == "box" else repeat_id(blocks, unit), dict(attrs, label="\n".join(lines)))
    return folds


def fold_backward(dot: DotGraph, trace: BackwardTrace, graph, depth: int | None, shown_ops,
                  grads: bool = False, finish=lambda d: d) -> tuple[DotGraph, int]:
    """The folded picture and the depth used: `depth`, or (None) the deepest whose picture fits.
    finish: applied to each folded picture (before its size is judged)."""
    blocks = blocks_of(graph)
    deepest = max(block_levels(blocks).values(), default=0)
    if depth is not None and depth < 0:  # everything, every copy
        return finish(dot), -1
    if depth is not None:
        depth = min(depth, deepest)
        return finish(dot.folded(folds_for(trace, graph, depth, shown_ops, grads))), depth
    d, folded = pick_depth(deepest, lambda d: finish(dot.folded(folds_for(trace, graph, d, shown_ops, grads))))
    return folded, d
