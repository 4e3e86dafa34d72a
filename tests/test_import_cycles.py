"""No import cycle among the modules of builder/, export/ and viz/, counting imports inside functions too
(a cycle hidden in a function is still a cycle: the two modules cannot be understood, or split, apart)."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("builder", "export", "viz")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every project module `path` imports, at module level or inside functions; `from pkg import mod`
    counts as importing `pkg.mod` when that is a module, else `pkg`."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a missing leaf: its nearest module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> nx.DiGraph:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    known = {module_name(p) for p in files}
    g = nx.DiGraph()
    for p in files:
        g.add_node(module_name(p))
        for target in imported_modules(p, known):
            # a package's __init__ runs before any of its modules: importing `a.b` imports `a` too, but
            # that is not an edge a module chooses, so only the named module counts
            g.add_edge(module_name(p), target)
    return g


def test_the_walker_sees_function_level_and_relative_imports():
    g = import_graph()
    assert g.has_edge("builder.spec.reader", "builder.graph.pipeline")        # module level, relative
    assert g.has_edge("builder.graph.pipeline", "builder.graph.infer")
    assert g.has_edge("builder", "builder.compile")            # inside builder.build()
    assert g.has_edge("builder.commands.check", "builder.core.types")  # `from ..types import`
    assert len(g) > 60


def test_no_import_cycles():
    g = import_graph()
    cycles = [c for c in nx.simple_cycles(g)]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c + [c[0]]) for c in sorted(cycles, key=len))
