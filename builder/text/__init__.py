"""The text stage: YAML read with line:column positions and limits, and the `${...}` expression evaluator."""
