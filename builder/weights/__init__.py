"""Weights into a module: the one loader with weight maps (loader) and where they come from:
`--run`, `--weights`, `--random` (sources)."""
