"""Names the train section picks from a table (a loss, a source, an optimizer, ...): the entry, or one
line that says where, what was asked for, the closest known name and the known ones."""
from __future__ import annotations

from builder.core.errors import UserError, did_you_mean


def pick(table, name, where: str, what: str):
    """`table[name]`, or UserError("train.loss: unknown loss 'mse2' (did you mean 'mse'?); known: ...")."""
    if name in table:
        return table[name]
    hint = did_you_mean(name, table) if name else None
    raise UserError(f"{where}: unknown {what} {name!r}" + (f" ({hint})" if hint else "")
                    + f"; known: {', '.join(map(str, table))}")
