"""`share: OTHER` on a block instance: every op node of the instance calls the module of the node at the
same path inside instance OTHER (a Siamese network's two towers are one set of weights).

Applied to the expansion's drafts before wiring, so OTHER may come before or after the instance; the
per-node `share` it sets is the one mechanism the later passes already know (counted once, compiled as
one module, drawn as shared), and `builder.graph.sharing` still checks each pair's op and arguments.
"""
from __future__ import annotations

from dataclasses import replace

from builder.core.errors import did_you_mean


def apply_block_shares(ex) -> None:
    """ex: the Expander, with `block_shares` [(instance path, OTHER, loc, file)], `drafts`, `block_meta`."""
    for inst, other, loc, file in ex.block_shares:
        if other not in ex.block_meta or ex.block_meta[other].get("repeat"):
            known = [p for p, m in ex.block_meta.items() if not m.get("repeat") and p != inst]
            ex.err(f"share: no block instance '{other}'", loc, node=inst, file=file,
                   hint=did_you_mean(other, known) or (f"block instances: {', '.join(known)}" if known else None))
            continue
        if other == inst or other.startswith(inst + ".") or inst.startswith(other + "."):
            ex.err(f"share: '{inst}' cannot share with '{other}', which contains it or is inside it", loc,
                   node=inst, file=file)
            continue
        mine, theirs = _members(ex.drafts, inst), _members(ex.drafts, other)
        if set(mine) != set(theirs):
            extra = sorted(set(mine) ^ set(theirs))[0]
            where = other if extra in mine else inst
            ex.err(f"share: '{inst}' and '{other}' differ in structure ('{where}' has no node '{extra}')", loc,
                   node=inst, file=file)
            continue
        ex.block_meta[inst]["share"] = other
        for rel, draft in mine.items():
            if draft.share is None and not draft.tie:
                ex.drafts[draft.path] = replace(draft, share=theirs[rel].path,
                                                arg_locs={"share": loc, **draft.arg_locs})
    for path, draft in list(ex.drafts.items()):  # a chain (c shares b, b shares a) ends at the module's owner
        share, seen = draft.share, set()
        while share in ex.drafts and ex.drafts[share].share and share not in seen:
            seen.add(share)
            share = ex.drafts[share].share
        if share != draft.share:
            ex.drafts[path] = replace(draft, share=share)


def _members(drafts: dict, prefix: str) -> dict:
    return {path[len(prefix) + 1:]: d for path, d in drafts.items() if path.startswith(prefix + ".")}
