"""The documentation site builds with `mkdocs build --strict` (a broken link, a missing page or a bad anchor
fails it), and the notes under docs/pending/ stay out of it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import doc_blocks as D


def test_the_site_builds_strict_and_leaves_pending_notes_out(tmp_path):
    shutil.copy(D.ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(D.DOCS, tmp_path / "docs")
    (tmp_path / "builder").symlink_to(D.ROOT / "builder")          # mkdocstrings reads the docstrings there
    pending = tmp_path / "docs" / "pending"
    pending.mkdir(exist_ok=True)
    (pending / "some-branch.md").write_text("# Notes\n\n[a page still to come](nowhere.md)\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr
    site = tmp_path / "site"
    assert (site / "index.html").is_file() and (site / "reference" / "ops" / "index.html").is_file()
    assert not (site / "pending").exists()
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("builder.load", "builder.build", "builder.build_all", "builder.generate",
                 "builder.training.entry.train", "builder.weights.loader.load_weights",
                 "builder.core.types.NodeRecord", "builder.core.errors.SpecError"):
        assert f'id="{name}"' in api, name


def test_a_broken_link_fails_the_strict_build(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n\n[gone](missing.md)\n", encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text("site_name: t\ntheme: {name: material, font: false}\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "missing.md" in done.stderr
