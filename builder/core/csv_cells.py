"""CSV files we write are opened in spreadsheets, where a cell starting with = + - @ (or a tab / carriage
return) is a formula: `=cmd|' /C calc'!A0` in a class name would run. Every text cell we write to CSV goes
through `cell`, which prefixes such text with a quote (the OWASP advice); numbers, and text that reads as a
number (`-0.5`, `-inf`), are left as they are.
"""
from __future__ import annotations

import csv

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value):
    """`value` as safe to put in a CSV cell."""
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


class SafeWriter:
    """csv.writer whose rows pass through `cell`."""

    def __init__(self, f, **options):
        self._writer = csv.writer(f, **options)

    def writerow(self, row):
        return self._writer.writerow([cell(v) for v in row])

    def writerows(self, rows):
        for row in rows:
            self.writerow(row)


def writer(f, **options) -> SafeWriter:
    return SafeWriter(f, **options)
