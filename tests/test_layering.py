"""Who may import whom: the core (builder/ but its CLI) imports neither ONNX (export/) nor pictures (viz/);
export and viz never import each other; only the CLI imports the CLI (builder.commands.cli, builder.commands).
Every import statement of every module counts, at module level and inside functions."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("builder", "export", "viz")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Absolute names of the modules `path` imports (relative imports resolved, `from a import b` gives
    both a and a.b, since b may be a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            found.add(source)
            found |= {f"{source}.{alias.name}" for alias in node.names}
    return found


def import_table() -> dict[str, set[str]]:
    return {module_name(p): imported(p) for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def is_cli(name: str) -> bool:
    return name == "builder.commands.cli" or name == "builder.commands" or name.startswith("builder.commands.")


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def offenders(table, importer, imported_) -> list[str]:
    return sorted(f"{mod} imports {target}" for mod, targets in table.items() if importer(mod)
                  for target in targets if imported_(target))


def test_the_import_walker_sees_every_kind_of_import():
    """The walker itself, on the imports known to be there: a module-level relative import, a relative
    import inside a function, an absolute import inside a function, `from . import x`."""
    table = import_table()
    assert {"builder.core.errors", "builder.core.io_utils"} <= table["builder.training.checkpoint"]
    assert "builder.weights.sources" in table["builder.commands.export"]  # inside run()
    assert "export.onnx_export" in table["builder.commands.bench"]  # absolute, inside run()
    assert "builder.training.checkpoint" in table["builder.weights.sources"]  # from . import checkpoint
    assert "viz.autograd_walk" in table["viz.step"] and "builder.weights.sources" in table["viz.step"]
    assert len(table) > 60


def test_the_core_imports_neither_onnx_nor_pictures():
    table = import_table()
    core = lambda m: under(m, "builder") and not is_cli(m)  # noqa: E731
    assert offenders(table, core, lambda t: under(t, "export") or under(t, "viz")) == []


def test_onnx_and_pictures_do_not_import_each_other():
    table = import_table()
    assert offenders(table, lambda m: under(m, "viz"), lambda t: under(t, "export")) == []
    assert offenders(table, lambda m: under(m, "export"), lambda t: under(t, "viz")) == []


def test_only_the_cli_imports_the_cli():
    table = import_table()
    assert offenders(table, lambda m: not is_cli(m), is_cli) == []


def test_the_checks_catch_a_forbidden_import():
    """The rules on a table with one planted offence each: every check must report it."""
    table = import_table()
    table["builder.spec.reader"] = table["builder.spec.reader"] | {"viz.forward"}
    table["export.verify"] = table["export.verify"] | {"viz.labels"}
    table["viz.labels"] = table["viz.labels"] | {"builder.commands.common"}
    core = lambda m: under(m, "builder") and not is_cli(m)  # noqa: E731
    assert offenders(table, core, lambda t: under(t, "export") or under(t, "viz")) == [
        "builder.spec.reader imports viz.forward"]
    assert offenders(table, lambda m: under(m, "export"), lambda t: under(t, "viz")) == [
        "export.verify imports viz.labels"]
    assert offenders(table, lambda m: not is_cli(m), is_cli) == ["viz.labels imports builder.commands.common"]
