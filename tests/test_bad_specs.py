"""The bad-spec corpus: every spec under tests/bad_specs/ must fail `build check` cleanly.

Each spec starts with comment lines that state what the user must see:

    # args: --set widht=32                 (optional extra CLI arguments)
    # expect: 14: cannot add | [B,32]       (line 14; every `|`-separated part on that one error line)
    # expect: blocks.yaml:3: import cycle   (the error is located in another file)
    # expect: -: no param 'widht'           (an error without a line: it is about the command line)

A spec may carry several `expect:` lines (several errors in one run). Multi-file cases live in a
subfolder whose `main.yaml` carries the expectations. The check runs in-process through
`builder.commands.cli.main` (a subprocess per spec would cost seconds of torch import each); one test runs the
real `build` command to prove the exit code and the absence of a traceback end to end.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.commands.cli import main

HERE = Path(__file__).parent
CORPUS = HERE / "bad_specs"
ROOT = HERE.parent
ERROR_LINE = re.compile(r"^(?P<file>[^\n]*?):(?P<line>\d+)(?::(?P<col>\d+))?: error: (?P<msg>.*)$")
NO_LINE = re.compile(r"^(?P<file>[^\n:]*?): error: (?P<msg>.*)$")


@dataclass
class Expect:
    file: str | None
    line: int | None
    parts: list


def corpus():
    specs = sorted(CORPUS.glob("*.yaml")) + sorted(CORPUS.glob("*/main.yaml"))
    return specs


def read_header(path: Path):
    args, expects = [], []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not raw.startswith("#"):
            break
        body = raw[1:].strip()
        if body.startswith("args:"):
            args += shlex.split(body[len("args:"):])
        elif body.startswith("expect:"):
            where, _, message = body[len("expect:"):].strip().partition(": ")
            file, _, line = where.rpartition(":")
            expects.append(Expect(file or None, None if line == "-" else int(line),
                                  [p.strip() for p in message.split(" | ") if p.strip()]))
    return args, expects


def run_check(path: Path, args, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = main(["check", str(path.relative_to(ROOT)), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def matches(expect: Expect, line: str, spec: Path) -> bool:
    m = ERROR_LINE.match(line)
    if m:
        if expect.line is None or int(m["line"]) != expect.line:
            return False
    else:
        m = NO_LINE.match(line)
        if not m or expect.line is not None:
            return False
    wanted_file = expect.file or spec.name
    if Path(m["file"]).name != wanted_file:
        return False
    return all(part in m["msg"] for part in expect.parts)


def test_corpus_is_large_enough():
    specs = corpus()
    assert len(specs) >= 45, f"only {len(specs)} bad specs"
    for spec in specs:
        assert read_header(spec)[1], f"{spec} has no `# expect:` line"


@pytest.mark.parametrize("spec", corpus(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_bad_spec(spec: Path, capsys, monkeypatch):
    args, expects = read_header(spec)
    start = time.perf_counter()
    code, out, err = run_check(spec, args, capsys, monkeypatch)
    elapsed = time.perf_counter() - start
    assert code == 2, f"exit code {code}, stdout: {out!r} stderr: {err!r}"
    assert "Traceback" not in err and "Traceback" not in out
    assert out == "", f"a failing check printed on stdout: {out!r}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "no error message"
    for line in lines:
        assert ERROR_LINE.match(line) or NO_LINE.match(line), f"not a compiler-style error line: {line!r}"
    for expect in expects:
        assert any(matches(expect, line, spec) for line in lines), (
            f"expected an error at line {expect.line} containing {expect.parts}; got:\n{err}")
    if len(expects) > 1:
        assert len(lines) >= len(expects)
    assert elapsed < 10, f"took {elapsed:.1f}s: hostile specs must fail fast"


def test_billion_laughs_fails_fast(capsys, monkeypatch):
    start = time.perf_counter()
    code, _, err = run_check(CORPUS / "billion_laughs.yaml", [], capsys, monkeypatch)
    assert code == 2 and "alias bomb" in err
    assert time.perf_counter() - start < 2.0


def test_real_command_exit_code_and_no_traceback():
    """The installed entry point, as a user runs it: exit 2, compiler-style lines, no traceback."""
    specs = [CORPUS / "python_object_tag.yaml", CORPUS / "add_shape_mismatch.yaml"]
    code = ("import sys; from builder.commands.cli import main\n"
            "for p in sys.argv[1:]:\n"
            "    rc = main(['check', p]); print('RC', rc, file=sys.stderr, flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, specs)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("RC 2") == 2, proc.stderr
    assert "python_object_tag.yaml:5:7: error: tag !!python/object/apply:os.system is not allowed" in proc.stderr
    assert "add_shape_mismatch.yaml:8:3: error: sum: cannot add [B,32,16,16] and [B,16,32,32]" in proc.stderr
    assert not (ROOT / "pwned").exists()


def test_file_level_problems(tmp_path, capsys, monkeypatch):
    """Problems with the file itself: one line each, exit 2, no traceback."""
    big = tmp_path / "big.yaml"
    big.write_text("spec: 1\n" + "# padding\n" * 250_000, encoding="utf-8")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00spec: 1\n")
    cases = [(big, "larger than 2000 kB"), (binary, "not a UTF-8 text file"),
             (tmp_path / "missing.yaml", "no such spec file"), (tmp_path / "empty.yaml", "must be a YAML mapping")]
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    for path, message in cases:
        code = main(["check", str(path)])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, (path, err)


@pytest.mark.parametrize("command", [["summary"], ["summary", "--json"], ["code"]])
def test_every_command_fails_cleanly_on_the_corpus(command, capsys, monkeypatch):
    """Not only `check`: every command that reads a spec exits 2 with the same kind of message."""
    for spec in corpus():
        args, _ = read_header(spec)
        monkeypatch.chdir(ROOT)
        code = main([*command[:1], str(spec.relative_to(ROOT)), *command[1:], *args])
        captured = capsys.readouterr()
        assert code == 2, (spec.name, captured)
        assert "Traceback" not in captured.err and captured.out == "", spec.name
