"""`dim(NAME, I)` in expressions: values that read sizes wait for shape inference.

Expansion cannot know sizes, so an op argument, a block param or an op node's `when:` whose `${...}`
reads `dim(...)` (directly or through such a param) is kept as an `expr.Deferred`. When inference
reaches the node, `settle` evaluates them with a size reader over the scope where the expression was
written (`x` there is the block input, a node or a network input of that scope) and the records
inferred so far. A `when` found false makes the node an Identity of its first input.
"""
from __future__ import annotations

from dataclasses import replace

from builder.shapes import rules as S
from builder.text.expr import DIM_READER, Deferred, ExprError
from builder.graph.scopes import NameRef
from builder.core.types import RECORD_KEY
from builder.text.yaml_loader import to_plain


class SizeContext:
    """Where a deferred expression was written: its scope, the expansion's drafts (to resolve names) and
    the spec's evaluator (`evaluate(value, names)`)."""

    def __init__(self, scope, drafts: dict, evaluate):
        self.scope, self.drafts, self.evaluate = scope, drafts, evaluate

    def locate(self, name: str):
        """(node, port) that `name` (or `node.port`) names in the scope; raises wiring.RefError."""
        from builder.graph.wiring import resolve
        base, _, port = name.partition(".")
        return resolve(NameRef(self.scope, base, port or None, None, self.scope.file), self.drafts)


class _Names(dict):
    """Expression names whose deferred values are evaluated when (and only when) an expression reads them."""

    def __init__(self, base: dict, g):
        super().__init__(base)
        self.g = g

    def __getitem__(self, key):
        value = super().__getitem__(key)
        return evaluate(self.g, value) if isinstance(value, Deferred) else value


_BUSY = object()


def evaluate(g, d: Deferred):
    """The value of a deferred expression over graph `g`'s records (cached: a block param feeds many nodes)."""
    if d.done:
        return d.value
    if d.value is _BUSY:
        raise ExprError("a param's size expression refers to itself")
    d.value = _BUSY
    try:
        names = _Names(d.names, g)
        names[DIM_READER] = size_reader(g, d.context)
        value = to_plain(d.context.evaluate(d.raw, names))
    except BaseException:
        d.value = None
        raise
    d.value, d.done = value, True
    return value


def size_reader(g, context: SizeContext):
    """dim(name, i): the static size of dim i of what `name` produces, from the records inferred so far."""
    from builder.graph.wiring import RefError

    def read(name: str, index: int) -> int:
        try:
            node, port = context.locate(name)
        except RefError as e:
            raise ExprError(f"dim({name}, {index}): {e}") from None
        rec = g.nodes[node].get(RECORD_KEY) if node in g else None
        if rec is None or port not in rec.out_shapes:
            raise ExprError(f"dim({name}, {index}): the size of '{name}' is not known here (it is computed "
                            "after this node, or its own shape failed)")
        shape = rec.out_shapes[port]
        if not -len(shape) <= index < len(shape):
            raise ExprError(f"dim({name}, {index}): '{name}' is {S.fmt(shape)}, which has no dim {index}")
        size = shape[index]
        if not S.is_static(size):
            raise ExprError(f"dim({name}, {index}) is the symbolic size '{size}' of {S.fmt(shape)}: only static "
                            "sizes can be read")
        return size
    return read


def settle(g, draft, failed):
    """The draft with its deferred arguments evaluated and its deferred `when` decided (an Identity of its
    first input when false); failed(message, key) raises for the first problem."""
    if draft.when is None and not any(isinstance(v, Deferred) for v in draft.args.values()):
        return draft
    args = dict(draft.args)
    for key, value in args.items():
        if isinstance(value, Deferred):
            try:
                args[key] = evaluate(g, value)
            except ExprError as e:
                failed(str(e), key)
    draft = replace(draft, args=args)
    if draft.when is None:
        return draft
    try:
        keep = evaluate(g, draft.when)
    except ExprError as e:
        failed(str(e), "when")
    if not isinstance(keep, bool):
        failed(f"`when` must be true or false, got {keep!r}", "when")
    if keep:
        return replace(draft, when=None)
    extra = [(u, v, k) for u, v, k, d in g.in_edges(draft.path, keys=True, data=True) if d["slot"] > 0]
    g.remove_edges_from(extra)
    return replace(draft, op="Identity", args={}, sources=tuple(draft.sources[:1]), slots=None, when=None)
