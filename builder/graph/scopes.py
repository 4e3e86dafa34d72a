"""The expansion's scopes and lazy references: what `in:` and `outputs:` name before wiring resolves them.

A reference is kept lazy so `in:` may name a later node, a block's output or a block's input.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class NameRef:
    """A name written in a scope (`conv1`, `lstm.h`), looked up when wired."""
    scope: "Scope"
    name: str
    port: str | None
    loc: tuple | None
    file: str


@dataclass
class NodeRef:
    """A node's output port, already known (a network input)."""
    node: str
    port: str


@dataclass
class ExportRef:
    """An output of a block instance: the one named `port`, else the one at position `index`, else its first."""
    export: "BlockExport"
    port: str | None
    loc: tuple | None
    file: str
    index: int | None = None


@dataclass
class BlockExport:
    """The outputs of one block instance, as references into its scope; a repeated block's export is its
    last copy's, with every copy's export in `copies` (so `in: stack.0.sk` names copy 0's output `sk`)."""
    path: str
    outputs: list  # [(port name, target)]
    copies: list | None = None


@dataclass
class Scope:
    """The names of one network body or block instance, and the params its `${...}` see."""
    prefix: str
    file: str
    env: dict
    table: dict = field(default_factory=dict)   # local name -> (kind, ...)
    declared: set = field(default_factory=set)  # every name written in this scope, even a failed one
