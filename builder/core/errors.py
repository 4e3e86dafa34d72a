"""Errors as values with a location: the user sees `file:line:col: error: node: message`, never a traceback."""
from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    message: str
    file: str | None = None
    line: int | None = None
    col: int | None = None
    node: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file or "<spec>"
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        node = f"{self.node}: " if self.node else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}: error: {node}{self.message}{hint}"


class UserError(Exception):
    """A mistake of the user's (bad file, bad flag): printed as one line, exit code 2."""


class SpecError(UserError):
    """One or more diagnostics about a spec; `str()` is one line per diagnostic."""

    def __init__(self, diagnostics):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


def did_you_mean(name: str, known) -> str | None:
    """A 'did you mean X?' hint when `name` is close to one of `known`."""
    match = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    if not match:
        lowered = {str(k).lower(): str(k) for k in known}
        if str(name).lower() in lowered:
            match = [lowered[str(name).lower()]]
    return f"did you mean '{match[0]}'?" if match else None


class Collector:
    """Gathers diagnostics so a run can report several errors at once."""

    def __init__(self, file: str | None):
        self.file = file
        self.items: list[Diagnostic] = []

    def error(self, message, loc=None, node=None, hint=None):
        line, col = (loc or (None, None))
        self.items.append(Diagnostic(message, self.file, line, col, node, hint))

    def raise_if_any(self):
        if self.items:
            raise SpecError(self.items)
