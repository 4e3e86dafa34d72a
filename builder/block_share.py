"""`share: OTHER` on a block instance: every op node of the instance calls the module of the node at the
same path inside instance OTHER (a Siamese network's two towers are one set of weights).

It is applied after expansion, so OTHER may come before or after the instance; the per-node `share`
it sets is the one mechanism the rest of the pipeline already knows (counted once, compiled as one
module, drawn as shared), and `check_shares` still checks that each pair has the same op and arguments.
"""
from __future__ import annotations

from .errors import did_you_mean


def apply_block_shares(builder, shares: list) -> None:
    """shares: [(instance path, OTHER path, loc, file)] in spec order."""
    for inst, other, loc, file in shares:
        if other not in builder.block_meta or builder.block_meta[other].get("repeat"):
            known = [p for p, m in builder.block_meta.items() if not m.get("repeat") and p != inst]
            builder.err(f"share: no block instance '{other}'", loc, node=inst, file=file,
                        hint=did_you_mean(other, known) or (f"block instances: {', '.join(known)}" if known else None))
            continue
        if other == inst or other.startswith(inst + ".") or inst.startswith(other + "."):
            builder.err(f"share: '{inst}' cannot share with '{other}', which contains it or is inside it", loc,
                        node=inst, file=file)
            continue
        mine = _members(builder, inst)
        theirs = _members(builder, other)
        if set(mine) != set(theirs):
            extra = sorted(set(mine) ^ set(theirs))[0]
            where = other if extra in mine else inst
            builder.err(f"share: '{inst}' and '{other}' differ in structure ('{where}' has no node '{extra}')",
                        loc, node=inst, file=file)
            continue
        builder.block_meta[inst]["share"] = other
        for rel, rec in mine.items():
            if rec.share is None and not rec.tie:
                rec.share = theirs[rel].path
                rec.arg_locs.setdefault("share", loc)
    for rec in builder.records.values():  # a chain (c shares b, b shares a) ends at the module's owner
        seen = set()
        while rec.share in builder.records and builder.records[rec.share].share and rec.share not in seen:
            seen.add(rec.share)
            rec.share = builder.records[rec.share].share


def _members(builder, prefix: str) -> dict:
    return {path[len(prefix) + 1:]: rec for path, rec in builder.records.items() if path.startswith(prefix + ".")}
