"""`dim(NAME, I)` in expressions: values that read sizes wait for shape inference.

Pass 1 (expansion) cannot know sizes, so an op argument or block param whose `${...}` reads `dim(...)`
(directly or through another such param) is kept as an `expr.Deferred`. When shape inference reaches
the node, `resolve_args` evaluates those arguments with a size reader over the scope where the
expression was written: `x` there is the block input, a node or a network input of that scope.
"""
from __future__ import annotations

from . import shapes as S
from .expr import DIM_READER, Deferred, ExprError
from .yaml_loader import to_plain


class _Names(dict):
    """Expression names whose deferred values are evaluated when (and only when) an expression reads them."""

    def __init__(self, base: dict, builder):
        super().__init__(base)
        self.builder = builder

    def __getitem__(self, key):
        value = super().__getitem__(key)
        return evaluate(self.builder, value) if isinstance(value, Deferred) else value


def evaluate(builder, d: Deferred):
    """The value of a deferred expression (cached: a block param is read by many nodes)."""
    if d.done:
        return d.value
    if d.value is _BUSY:
        raise ExprError("a param's size expression refers to itself")
    d.value = _BUSY
    try:
        names = _Names(d.names, builder)
        names[DIM_READER] = size_reader(builder, d.scope)
        value = to_plain(builder.reader.eval_value(d.raw, names))
    except BaseException:
        d.value = None
        raise
    d.value, d.done = value, True
    return value


_BUSY = object()


def size_reader(builder, scope):
    """dim(name, i) over `scope`: the static size of dim i of what `name` (or `node.port`) produces."""
    from .graph import NameRef, RefError

    def read(name: str, index: int) -> int:
        base, _, port = name.partition(".")
        try:
            node, port = builder.resolve(NameRef(scope, base, port or None, None, scope.file))
        except RefError as e:
            raise ExprError(f"dim({name}, {index}): {e}") from None
        shapes = builder.g.nodes[node].get("out_shapes") if node in builder.g else None
        if not shapes or port not in shapes:
            raise ExprError(f"dim({name}, {index}): the size of '{name}' is not known here (it is computed "
                            "after this node, or its own shape failed)")
        shape = shapes[port]
        if not -len(shape) <= index < len(shape):
            raise ExprError(f"dim({name}, {index}): '{name}' is {S.fmt(shape)}, which has no dim {index}")
        size = shape[index]
        if not S.is_static(size):
            raise ExprError(f"dim({name}, {index}) is the symbolic size '{size}' of {S.fmt(shape)}: only static "
                            "sizes can be read")
        return size
    return read


def resolve_args(builder, rec, report) -> bool:
    """Evaluate the node's deferred arguments in place; report(message, loc) each failure."""
    ok = True
    for key, value in list(rec.args.items()):
        if isinstance(value, Deferred):
            try:
                rec.args[key] = evaluate(builder, value)
            except ExprError as e:
                report(str(e), rec.arg_locs.get(key))
                ok = False
    return ok


def decide_when(builder, rec, report) -> bool:
    """A `when:` that reads sizes: true keeps the node; false makes it an Identity of its first input
    (a node skipped in expansion vanishes; this one is decided after its inputs' shapes are known)."""
    if not isinstance(rec.when, Deferred):
        return True
    try:
        keep = evaluate(builder, rec.when)
    except ExprError as e:
        report(str(e), rec.arg_locs.get("when"))
        return False
    if not isinstance(keep, bool):
        report(f"`when` must be true or false, got {keep!r}", rec.arg_locs.get("when"))
        return False
    rec.when = keep
    if not keep:
        rec.op, rec.args, rec.slots, rec.inputs = "Identity", {}, None, rec.inputs[:1]
        extra = [(u, v, k) for u, v, k, d in builder.g.in_edges(rec.path, keys=True, data=True) if d["slot"] > 0]
        builder.g.remove_edges_from(extra)
    return True
