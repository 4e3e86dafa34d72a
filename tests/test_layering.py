"""Who may import whom: the core (builder/ but its CLI) imports neither ONNX (export/) nor pictures (viz/);
export and viz never import each other; only the CLI imports the CLI (builder.commands.cli, builder.commands).
And the stages, in the order data flows through them (docs/ARCHITECTURE.md), each one a package: a stage
imports only the stages before it. Every import statement of every module counts, at module level and
inside functions."""
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


# The stages as `ls builder/` shows them, in import order: a module may import its own stage and the ones
# before it. `builder` itself (the facade: load, build, train, generate) reaches every stage lazily, so
# only the stages after it (sweep, export, viz, the CLI) may import it.
STAGES = ("builder.core", "builder.text", "builder.shapes", "builder.ops", "builder.graph", "builder.spec",
          "builder.compile", "builder.data", "builder.training", "builder.weights", "builder.generation",
          "builder", "builder.sweep", "export", "viz", "builder.commands")
# The two places an earlier stage calls a later one, each a lazy import inside one function: the spec
# stage checks a `sweep:` section (its space against the trainer's option tables) at load time, so that
# `build check` reports a bad space value at its line; and the JSON Schema includes the sweep section's.
LATE_HOOKS = {("builder.spec.reader", "builder.sweep.space"), ("builder.spec.schema", "builder.sweep.space")}


def stage_of(name: str) -> int | None:
    if name == "builder":
        return STAGES.index("builder")
    found = [i for i, s in enumerate(STAGES) if s != "builder" and under(name, s)]
    return found[0] if found else None


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def backward_imports(table) -> list[str]:
    """Every import of a later stage (or of the facade by a stage before it); `from builder import ops`
    imports the ops stage, not the facade."""
    found = []
    for mod, targets in table.items():
        here = stage_of(mod)
        if mod == "builder" or here is None:
            continue
        for target in targets:
            if target == "builder" and any(t.startswith("builder.") and t.count(".") == 1 and is_module(t)
                                           for t in targets) and not _imports_facade(mod):
                continue
            there = stage_of(target)
            if there is None or there <= here or {STAGES[here], STAGES[there]} == {"export", "viz"}:
                continue
            if any(under(mod, a) and under(target, b) for a, b in LATE_HOOKS):
                continue
            found.append(f"{mod} imports {target}")
    return sorted(set(found))


def _imports_facade(mod: str) -> bool:
    """Whether `mod` imports a name of the facade (`import builder`, `from builder import build`)."""
    path = ROOT.joinpath(*mod.split("."))
    path = path / "__init__.py" if (path / "__init__.py").is_file() else path.with_suffix(".py")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name == "builder" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "builder" and not node.level:
            if any(not is_module(f"builder.{a.name}") for a in node.names):
                return True
    return False


def test_builder_is_one_package_per_stage():
    """`ls builder/` shows the stages and little else (issue 19: about a dozen entries)."""
    entries = sorted(p.name for p in (ROOT / "builder").iterdir() if p.name != "__pycache__")
    stages = {s.split(".")[1] for s in STAGES if s.startswith("builder.")}
    assert {e.removesuffix(".py") for e in entries} - {"__init__"} == stages
    assert len(entries) <= 14


def test_a_stage_imports_only_the_stages_before_it():
    assert backward_imports(import_table()) == []


def test_the_stage_rule_catches_a_backward_import():
    table = import_table()
    table["builder.graph.infer"] = table["builder.graph.infer"] | {"builder.training.losses"}
    table["builder.ops.layers"] = table["builder.ops.layers"] | {"builder.shapes.rules"}   # allowed: earlier
    table["builder.data.files"] = table["builder.data.files"] | {"builder"}
    assert backward_imports(table) == ["builder.data.files imports builder",
                                       "builder.graph.infer imports builder.training.losses"]
