"""ONNX node names that carry spec paths, so a viewer groups the graph the way the spec does.

The torch 2.13 exporter records, on every node it translates, `pkg.torch.onnx.name_scopes`: the
`nn_module_stack` of the FX node as a list of module paths (`['', 'stage1.0.conv1', 'conv2d']`, the
last entry being the FX node). Since every spec node is a submodule named by its spec path, the last
module path is the spec path. Nodes get names in the style of the legacy exporter, one `/` level per
enclosing block: `/stage1/stage1.0/stage1.0.conv1/Conv`, plus `builder.spec_path` in their metadata.
"""
from __future__ import annotations

import ast

SCOPES_KEY = "pkg.torch.onnx.name_scopes"
PATH_KEY = "builder.spec_path"


def spec_path_of(node, known: set | None = None) -> str | None:
    """The spec path recorded for an onnx_ir node ('' at top level), None when nothing is recorded.
    With `known` (the graph's node ids and block paths), the innermost scope that is a spec path wins:
    an op's module may hold its own torch submodules (`rnn.rnn` inside the spec node `rnn`)."""
    raw = node.metadata_props.get(SCOPES_KEY)
    if not raw:
        return None
    try:
        scopes = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    modules = [s for s in scopes[:-1] if s and not s.startswith("_empty_nn_module_stack")]
    if known:
        modules = [s for s in modules if s in known] or modules
    return modules[-1] if modules else ""


def scope_levels(path: str, blocks: dict | None = None) -> list[str]:
    """`stage1.0.conv1` -> [`stage1`, `stage1.0`, `stage1.0.conv1`]; with the graph's block table,
    only prefixes that are blocks become levels."""
    if not path:
        return []
    parts = path.split(".")
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts))]
    if blocks is not None:
        prefixes = [p for p in prefixes if p in blocks]
    return prefixes + [path]


def name_nodes_by_spec_path(model, blocks: dict | None = None, known: set | None = None) -> dict[str, int]:
    """Rename every node of an onnx_ir model (subgraphs too); returns the node count per spec path.
    `blocks` is the graph's block table, `known` the set of spec paths (node ids and blocks)."""
    counts: dict[str, int] = {}
    taken: set[str] = set()
    for node in model.graph.all_nodes():
        path = spec_path_of(node, known)
        if path is None:
            path = _inherited_path(node, known)
        if path:
            node.metadata_props[PATH_KEY] = path
        counts[path or ""] = counts.get(path or "", 0) + 1
        base = "/" + "/".join(scope_levels(path or "", blocks) + [node.op_type])
        name, k = base, 1
        while name in taken:
            name = f"{base}_{k}"
            k += 1
        taken.add(name)
        node.name = name
    return counts


def _inherited_path(node, known=None) -> str | None:
    """A node the optimiser made without metadata takes the path of the node that consumes it."""
    for out in node.outputs:
        for user, _ in out.uses():
            path = user.metadata_props.get(PATH_KEY) or spec_path_of(user, known)
            if path:
                return path
    return None
