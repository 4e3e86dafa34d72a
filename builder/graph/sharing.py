"""Sharing: check `share:` (reuse another node's module) and `tie:` (hold another node's Parameter), after
inference, and take shared and tied parameters out of the nodes' counts.

A tie is rewritten to the parameter that really holds the values, following chains (c -> b -> a) and
shared modules, so compile can tie every link to the same Parameter in any order.
"""
from __future__ import annotations

from dataclasses import replace

from builder.shapes import rules as S
from builder.core.errors import Diagnostic, did_you_mean
from builder.ops.registry import public_args
from builder.core.types import DRAFT_KEY, RECORD_KEY


def check_sharing(g, diagnostics: list) -> None:
    """Check every node's `share:` and `tie:` in `g` (whose nodes carry their NodeDraft and NodeRecord) and
    update the records' parameter counts and tie targets; problems go to `diagnostics`."""
    written = {path: d[DRAFT_KEY] for path, d in g.nodes(data=True) if d[DRAFT_KEY].op != "input"}

    def err(rec, msg, key, hint=None):  # pointing at the key the user wrote
        line, col = rec.arg_locs.get(key, rec.loc) or (None, None)
        diagnostics.append(Diagnostic(msg, rec.file, line, col, rec.path, hint))

    for path, rec in written.items():
        node = g.nodes[path][RECORD_KEY]
        if rec.share:
            other = g.nodes[rec.share][RECORD_KEY] if rec.share in written else None
            if other is None:
                err(rec, f"share: no node '{rec.share}'", "share",
                    did_you_mean(rec.share, [p for p in written if p != path]))
                continue
            if other.share:
                err(rec, f"share: '{rec.share}' itself shares another node's module; share that one", "share")
                continue
            if other.op != node.op or public_args(other.args) != public_args(node.args):
                err(rec, f"cannot share {rec.share} ({other.op} {public_args(other.args)}) with a "
                    f"{node.op} {public_args(node.args)}", "share")
                continue
            node = replace(node, param_count=0, trainable_param_count=0)
        if rec.tie and rec.share:
            err(rec, "a node with `share` has no parameters of its own to `tie`", "tie")
            g.nodes[path][RECORD_KEY] = node
            continue
        for pname, target in (rec.tie or {}).items():
            tnode, _, tparam = target.rpartition(".")
            if pname not in node.param_shapes:
                err(rec, f"tie: {node.op} has no parameter '{pname}'", "tie", did_you_mean(pname, node.param_shapes))
                continue
            if tnode not in written:
                err(rec, f"tie: no node '{tnode}'", "tie", did_you_mean(tnode, [p for p in written if p != path]))
                continue
            tshapes = g.nodes[tnode][RECORD_KEY].param_shapes
            if tparam not in tshapes:
                err(rec, f"tie: '{tnode}' has no parameter '{tparam}'", "tie", did_you_mean(tparam, tshapes))
                continue
            if tshapes[tparam] != node.param_shapes[pname]:
                err(rec, f"tie: cannot tie {pname} {S.fmt(node.param_shapes[pname])} to {target} "
                    f"{S.fmt(tshapes[tparam])}", "tie")
                continue
            root = tie_root(written, path, pname)
            if root is None:
                err(rec, f"tie: {path}.{pname} is tied back to itself (through {target})", "tie")
                continue
            n = 1
            for d in tshapes[tparam]:
                n *= d
            node = replace(node, tie={**node.tie, pname: f"{root[0]}.{root[1]}"}, param_count=node.param_count - n,
                           trainable_param_count=node.trainable_param_count - (n if node.trainable else 0))
        g.nodes[path][RECORD_KEY] = node


def tie_root(written: dict, path: str, pname: str):
    """(node, param) that owns the values of path.pname after following ties and shares as written; None on
    a cycle."""
    seen = set()
    node, param = path, pname
    while (node, param) not in seen:
        seen.add((node, param))
        rec = written.get(node)
        if rec is None:
            return node, param
        if rec.share:
            node = rec.share
        elif rec.tie and param in rec.tie:
            node, _, param = rec.tie[param].rpartition(".")
        else:
            return node, param
    return None
