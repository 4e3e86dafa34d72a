"""The `{name}` / `{name*}` patterns of a weight map, matched without a backtracking regex.

A regex of k lazy groups backtracks in O(n^k) on a key that almost matches (six `{x*}` against a
100-character key took 24 s). This matcher gives the same answer (the leftmost-shortest choice for each
placeholder, as the lazy regex did) with memoised search: each (piece, position) state fails at most
once, so a match costs at most pieces x len(key)^2 steps, and a match that needs more than MAX_STEPS
states is refused (one line) instead of searched.
"""
from __future__ import annotations

import re

from builder.core.errors import UserError

PLACEHOLDER = re.compile(r"\{(\w+)(\*?)\}")
MAX_PLACEHOLDERS = 16
MAX_PATTERN = 1000
MAX_STEPS = 20_000  # per match: a pattern so ambiguous for a key is refused rather than searched for seconds


class Pattern:
    """One compiled pattern: literal pieces and placeholders; `match(key)` -> {name: text} or None."""

    def __init__(self, pattern: str):
        if len(pattern) > MAX_PATTERN:
            raise UserError(f"weight map: pattern '{pattern[:60]}...' is longer than {MAX_PATTERN} characters")
        self.source = pattern
        self.pieces: list[tuple[str, str]] = []  # ("lit", text) | ("seg", name) | ("any", name)
        pos, seen = 0, set()
        for m in PLACEHOLDER.finditer(pattern):
            if m.start() > pos:
                self.pieces.append(("lit", pattern[pos:m.start()]))
            name = m.group(1)
            if name in seen:
                raise UserError(f"weight map: pattern '{pattern}' uses {{{name}}} twice")
            seen.add(name)
            self.pieces.append(("any" if m.group(2) else "seg", name))
            pos = m.end()
        if pos < len(pattern):
            self.pieces.append(("lit", pattern[pos:]))
        if len(seen) > MAX_PLACEHOLDERS:
            raise UserError(f"weight map: pattern '{pattern[:60]}' has more than {MAX_PLACEHOLDERS} placeholders")
        self.names = [name for kind, name in self.pieces if kind != "lit"]

    def match(self, key: str) -> dict | None:
        pieces, n = self.pieces, len(key)
        failed: set[tuple[int, int]] = set()
        groups: dict[str, str] = {}
        steps = [0]

        def at(i: int, pos: int) -> bool:
            if i == len(pieces):
                return pos == n
            if (i, pos) in failed:
                return False
            kind, value = pieces[i]
            if kind == "lit":
                if key.startswith(value, pos) and at(i + 1, pos + len(value)):
                    return True
            else:
                for end in self._ends(i, kind, key, pos):
                    steps[0] += 1
                    if steps[0] > MAX_STEPS:
                        raise UserError(f"weight map: pattern '{self.source[:80]}' is too ambiguous to match key "
                                        f"'{key[:80]}' (over {MAX_STEPS} steps); put literal text between its "
                                        "placeholders")
                    if at(i + 1, end):
                        groups[value] = key[pos:end]
                        return True
            failed.add((i, pos))
            return False

        return groups if at(0, 0) else None


    def _ends(self, i: int, kind: str, key: str, pos: int):
        """Where placeholder i (at `pos`) may end, shortest first, skipping ends that cannot match: the
        next piece's literal must follow; the pattern's end must be the key's; a `{name*}` that follows
        can take whatever a longer choice here would have taken (so only the shortest is tried)."""
        stop = len(key) if kind == "any" else _segment_end(key, pos)
        first = pos if kind == "any" else pos + 1  # `{name}` takes at least one character
        if i + 1 == len(self.pieces):
            if first <= len(key) == stop:
                yield len(key)
            return
        nxt, text = self.pieces[i + 1]
        if nxt == "lit":
            end = key.find(text, first)
            while 0 <= end <= stop:
                yield end
                end = key.find(text, end + 1)
        elif nxt == "any":
            if first <= stop:
                yield first
        else:
            yield from range(first, stop + 1)


def _segment_end(key: str, pos: int) -> int:
    dot = key.find(".", pos)
    return len(key) if dot < 0 else dot
