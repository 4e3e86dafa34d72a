"""The code blocks of the documentation (README.md and docs/), read so that a test can run them.

A fenced block's tag says what it is:

    ```console   `$ build ...` (or `$ .venv/bin/build ...`, or any shell command) lines, each followed by the
                 output it prints; run in a scratch folder and compared
    ```pycon     `>>>` Python with its output, run as a doctest (ELLIPSIS, NORMALIZE_WHITESPACE)
    ```python    Python run as written (blocks of one page share one namespace, in page order)
    ```yaml / ```text / ```json ...   data, never run; a block of them that looks like a command is an error

HTML comments on the lines just above the fence change how it runs:

    <!-- skip: REASON -->   not run (a long training, a server, a GPU); the reason is required
    <!-- no-compare -->     run, the exit code checked, the shown output not compared
    <!-- exit: 2 -->        every command of the block must exit with this code (default 0)
    <!-- file: PATH -->     a yaml block that must equal the file PATH of the repository

Expected output may elide: a line `...` stands for any lines (or none), `...` inside a line for any text.
docs/pending/ (notes other branches leave for the docs) is not read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXCLUDED = ("pending",)           # folders of docs/ that are notes, not pages (also excluded by mkdocs.yml)
MARKER = re.compile(r"^<!--\s*(skip|no-compare|exit|file)\s*(?::\s*(.*?))?\s*-->$")
RUNNABLE = ("console", "pycon", "python")
COMMAND_LIKE = re.compile(r"^(\$ |>>> |build |\.venv/bin/build )")


@dataclass
class Block:
    page: Path
    line: int                    # 1-based line of the opening fence
    tag: str
    text: str
    markers: dict = field(default_factory=dict)

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"


def pages() -> list[Path]:
    """README.md and every page under docs/, but the excluded folders."""
    found = [ROOT / "README.md"]
    for path in sorted(DOCS.rglob("*.md")):
        if not any(part in EXCLUDED for part in path.relative_to(DOCS).parts[:-1]):
            found.append(path)
    return found


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of one page, with the markers written just above each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = re.match(r"^( *)(`{3,})\s*([\w-]*)", lines[i])
        if not fence:
            i += 1
            continue
        indent, ticks, tag = fence.groups()     # a block may sit indented in a list item
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(indent + ticks)), None)
        if end is None:
            raise ValueError(f"{page}:{i + 1}: code block never closed")
        markers, k = {}, i - 1
        while k >= 0 and (m := MARKER.match(lines[k].strip())):
            markers[m[1]] = (m[2] or "").strip()
            k -= 1
        body = [l[len(indent):] if l.startswith(indent) else l.lstrip() for l in lines[i + 1:end]]
        found.append(Block(page, i + 1, tag, "\n".join(body) + "\n", markers))
        i = end + 1
    return found


def problems(block: Block) -> list[str]:
    """What is wrong with a block's tags and markers, before anything runs."""
    out = []
    if block.tag not in RUNNABLE and any(COMMAND_LIKE.match(l) for l in block.text.splitlines()):
        out.append(f"{block.where}: a block showing a command or a Python call must be tagged "
                   f"console/pycon/python (it is '{block.tag or 'untagged'}')")
    if "skip" in block.markers and not block.markers["skip"]:
        out.append(f"{block.where}: <!-- skip: --> needs a reason")
    if "file" in block.markers and block.tag != "yaml":
        out.append(f"{block.where}: <!-- file: --> marks a yaml block")
    return out


def indented_commands(page: Path) -> list[str]:
    """Commands or Python shown in an indented (unfenced) code block, which no tag can mark: an error.
    README's two set-up lines (`$ bash setup.sh ...`) stay indented: CI reads the test command there."""
    out, fenced = [], False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if re.match(r"^ *`{3,}", line):
            fenced = not fenced
        elif not fenced and re.match(r"^ {4,}(\$ |>>> )?(build |\.venv/bin/build |>>> )", line):
            out.append(f"{page.relative_to(ROOT) if page.is_relative_to(ROOT) else page}:{number}: a command in an "
                       f"indented block: put it in a fenced console block")
    return out


@dataclass
class Command:
    line: str
    expected: list[str]          # the output shown under it (may be empty: then not compared)


def commands(block: Block) -> list[Command]:
    """A console block as commands with their shown output; a trailing `\\` continues a command."""
    found: list[Command] = []
    pending = None
    for raw in block.text.splitlines():
        if pending is not None:
            pending += " " + raw.strip().removesuffix("\\").strip()
            if not raw.rstrip().endswith("\\"):
                found.append(Command(pending, []))
                pending = None
            continue
        if raw.startswith("$ "):
            if raw.rstrip().endswith("\\"):
                pending = raw[2:].rstrip()[:-1].rstrip()
            else:
                found.append(Command(raw[2:], []))
        elif found:
            found[-1].expected.append(raw)
        elif raw.strip():
            raise ValueError(f"{block.where}: output before the first `$ ` command: {raw!r}")
    return found


def output_matches(expected: list[str], actual: str) -> bool:
    """Whether `actual` is what `expected` shows (trailing blanks ignored; `...` elides)."""
    want = [l.rstrip() for l in expected]
    while want and not want[-1]:
        want.pop()
    pattern = []
    for line in want:
        if line.strip() == "...":
            pattern.append(r"(?:.*\n)*?")
        else:
            pattern.append(".*".join(re.escape(part) for part in line.split("...")) + r"\n")
    got = "\n".join(l.rstrip() for l in actual.splitlines()).strip("\n") + "\n"
    return re.fullmatch("".join(pattern), got) is not None
