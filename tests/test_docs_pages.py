"""The docs say what the code is: ARCHITECTURE's stage table names every package of `builder/` and every module
in it, the README stays an overview with the CI's test command, and the pages link to each other."""
from __future__ import annotations

import re

import doc_blocks as D

ARCHITECTURE = D.DOCS / "ARCHITECTURE.md"


def stage_rows() -> dict[str, str]:
    """First cell of each row of the stage table -> the row's text."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    table = text.split("## Stages, packages and what passes between them", 1)[1].split("\n#", 1)[0]
    return {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ") and
            not line.startswith("| stage")}


def test_the_stage_table_names_every_package_and_module_of_builder():
    rows = "\n".join(stage_rows().values())
    for entry in sorted((D.ROOT / "builder").iterdir()):
        if entry.name in ("__pycache__", "__init__.py"):
            continue
        if entry.is_file():
            assert f"`builder/{entry.name}`" in rows, entry.name
            continue
        row = next((r for r in stage_rows().values() if f"`builder/{entry.name}/`" in r), None)
        assert row is not None, f"builder/{entry.name}/ has no row in ARCHITECTURE.md's stage table"
        for module in sorted(entry.glob("*.py")):
            if module.stem != "__init__":
                assert re.search(rf"`{module.stem}`", row), f"builder/{entry.name}/{module.name} is not in its row"
    for package in ("export", "viz"):
        row = next(r for r in stage_rows().values() if f"`{package}/`" in r)
        for module in sorted((D.ROOT / package).glob("*.py")):
            if module.stem != "__init__":
                assert f"`{module.stem}`" in row, f"{package}/{module.name} is not in its row"


def test_the_stage_order_and_late_hooks_are_the_layering_tests():
    import test_layering as L

    text = ARCHITECTURE.read_text(encoding="utf-8")
    order = text.split("in the order `", 1)[1].split("`;", 1)[0]
    names = [n.strip().split(" ")[0] for n in re.split(r"<|,", order.replace("\n", " "))]
    short = [s.removeprefix("builder.") if s != "builder" else "builder" for s in L.STAGES]
    assert names == short
    for importer, imported in L.LATE_HOOKS:
        assert f"`{importer}` -> `{imported}`" in text


def test_the_readme_is_an_overview_with_the_ci_test_command():
    readme = (D.ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    assert "\n    $ bash setup.sh && .venv/bin/build demo\n" in readme
    test_command = re.findall(r"^    *\$ (.*setup\.sh --test.*)$", readme, flags=re.M)   # .ci/run's sed
    assert test_command == ["bash setup.sh --test && .venv/bin/python -m pytest -n 2"]


def test_every_relative_link_of_the_readme_and_the_pages_resolves():
    broken = []
    for page in D.pages():
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(D.ROOT)}: {target}")
    assert broken == []


def test_the_data_page_lists_every_train_data_key_of_the_schema():
    from builder.spec.data_schema import COMMON, SOURCE_KEYS

    text = (D.DOCS / "data.md").read_text(encoding="utf-8").split("## Every `train.data` key", 1)[1]
    first_cells = " ".join(line.split("|")[1] for line in text.splitlines() if line.startswith("| `"))
    written = {**COMMON, **SOURCE_KEYS}
    keys = set(written) | {f"{key}.{sub}" for key, value in written.items() for sub in value.get("properties", ())}
    missing = sorted(k for k in keys if f"`{k}`" not in first_cells)
    assert missing == [], f"docs/data.md's key table lacks {missing}"
    listed = set(re.findall(r"`([a-z_.]+)`", first_cells))
    assert listed <= keys, f"docs/data.md lists keys the schema lacks: {sorted(listed - keys)}"
