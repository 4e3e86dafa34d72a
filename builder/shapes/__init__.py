"""Symbolic sizes: sympy dim expressions (dimexpr), declared dims and their bounds (dimenv), and the
shape-rule helpers ops use (rules)."""
