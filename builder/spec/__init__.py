"""The spec stage: the whole document (params, `use:`, `dims:`, `train:`, `sweep:`) read and checked,
each network handed to the graph stage; the JSON Schema and the summary table of a checked spec."""
