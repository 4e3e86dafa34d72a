"""Every code block of the docs that shows a command or a Python call runs, and prints what it shows.

The blocks and their markers are read by tests/doc_blocks.py (its docstring is the format). A page's blocks
run in order in one scratch folder (specs/, tests/ and examples/ linked in, so the paths shown resolve) and
share one Python namespace; `build` commands run in-process through the CLI's own `main` (a process each
would cost seconds of torch import), other shell commands through bash.
"""
from __future__ import annotations

import contextlib
import doctest
import io
import os
import shlex
import subprocess
import textwrap

import pytest

import doc_blocks as D
from builder.commands import cli

PAGES = D.pages()
LINKED = ("specs", "tests", "examples")


def page_id(path):
    return str(path.relative_to(D.ROOT))


def run_command(line: str, capsys) -> tuple[int, str]:
    argv = shlex.split(line, comments=True)
    if argv and argv[0] in ("build", ".venv/bin/build"):
        both = io.StringIO()               # one stream, in the order a terminal shows them
        with contextlib.redirect_stdout(both), contextlib.redirect_stderr(both):
            try:
                code = cli.main(argv[1:])
            except SystemExit as e:        # argparse's own usage errors
                code = e.code if isinstance(e.code, int) else 1
        capsys.readouterr()
        return code, both.getvalue()
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def run_console(block: D.Block, capsys) -> list[str]:
    failures = []
    want_code = int(block.markers.get("exit", 0))
    for command in D.commands(block):
        code, output = run_command(command.line, capsys)
        if code != want_code:
            failures.append(f"{block.where}: `{command.line}` exited {code}, not {want_code}:\n{output}")
        elif command.expected and "no-compare" not in block.markers \
                and not D.output_matches(command.expected, output):
            failures.append(f"{block.where}: `{command.line}` printed:\n{output}\n--- but the page shows:\n"
                            + "\n".join(command.expected))
    return failures


def run_pycon(block: D.Block, namespace: dict) -> list[str]:
    test = doctest.DocTestParser().get_doctest(block.text, namespace, block.where, str(block.page), block.line)
    report = []
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    if "no-compare" in block.markers:
        for example in test.examples:
            example.want = ""
    runner = doctest.DocTestRunner(optionflags=flags, verbose=False)
    runner.run(test, out=report.append, clear_globs=False)
    namespace.update(test.globs)           # DocTest ran on a copy: later blocks of the page see its names
    return [f"{block.where}:\n" + "".join(report)] if runner.failures else []


def run_python(block: D.Block, namespace: dict) -> list[str]:
    try:
        exec(compile(block.text, block.where, "exec"), namespace)
    except Exception as e:  # the block is user documentation: any exception is the failure to report
        return [f"{block.where}: {type(e).__name__}: {e}"]
    return []


def scratch_folder(tmp_path):
    for name in LINKED:
        (tmp_path / name).symlink_to(D.ROOT / name)
    return tmp_path


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_the_code_blocks_of_a_page_run_as_shown(page, tmp_path, capsys, monkeypatch):
    found = D.blocks(page)
    failures = [p for b in found for p in D.problems(b)] + D.indented_commands(page)
    monkeypatch.chdir(scratch_folder(tmp_path))
    namespace = {"__name__": "__docs__"}
    for block in found:
        if "skip" in block.markers or failures:
            continue
        if block.tag == "console":
            failures += run_console(block, capsys)
        elif block.tag == "pycon":
            failures += run_pycon(block, namespace)
        elif block.tag == "python":
            failures += run_python(block, namespace)
        elif "file" in block.markers:
            shown = (D.ROOT / block.markers["file"]).read_text(encoding="utf-8")
            if shown != block.text:
                failures.append(f"{block.where}: differs from {block.markers['file']}")
    assert not failures, "\n\n".join(failures)


def test_the_runner_reads_markers_commands_and_elisions(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(textwrap.dedent("""\
        <!-- exit: 2 -->
        <!-- no-compare -->
        ```console
        $ build check a.yaml --set \\
            width=3
        a.yaml:1:1: error: x
        $ ls
        ```

        ```text
        $ build train x.yaml
        ```
        <!-- skip: -->
        ```python
        print(1)
        ```
        """), encoding="utf-8")
    console, text, python = D.blocks(page)
    assert console.markers == {"exit": "2", "no-compare": ""} and console.line == 3
    assert [(c.line, c.expected) for c in D.commands(console)] == [
        ("build check a.yaml --set width=3", ["a.yaml:1:1: error: x"]), ("ls", [])]
    assert len(D.problems(text)) == 1 and "tagged" in D.problems(text)[0]
    assert len(D.problems(python)) == 1 and "reason" in D.problems(python)[0]
    assert D.indented_commands(page) == []
    page.write_text("text\n\n    $ build check x.yaml\n", encoding="utf-8")
    assert len(D.indented_commands(page)) == 1
    assert D.output_matches(["a", "...", "z ... end"], "a\nb\nc\nz 1 2 end\n")
    assert D.output_matches(["a", "...", "b"], "a\nb\n")
    assert not D.output_matches(["a", "b"], "a\nb\nc\n")
    assert not D.output_matches(["z ... end"], "y 1 end\n")


def test_pending_notes_are_not_pages():
    assert all("pending" not in p.relative_to(D.ROOT).parts for p in PAGES)
    assert D.ROOT / "README.md" in PAGES and D.DOCS / "ARCHITECTURE.md" in PAGES


def test_the_scratch_folder_resolves_the_paths_pages_show(tmp_path):
    folder = scratch_folder(tmp_path)
    assert (folder / "specs" / "mlp_digits.yaml").is_file() and os.path.islink(folder / "tests")
