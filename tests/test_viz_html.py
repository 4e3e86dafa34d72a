"""The interactive HTML view: one self-contained page, loaded in a real headless Chromium (Debian's
package, driven by Playwright; setup.sh --test installs both): no console error, the top-level blocks
visible, a click expands a block, the search opens the block holding a spec path."""

import re

import pytest

from builder.commands.cli import main
from tests.test_viz_cli import TINY_RESNET

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def open_page(browser, path):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: errors.append(f"network request {r.url}") if not r.url.startswith("file:") else None)
    page.goto(path.as_uri())
    page.wait_for_selector("#graph .nd")
    return page, errors


@pytest.fixture
def spec(tmp_path):
    p = tmp_path / "tiny_resnet.yaml"
    p.write_text(TINY_RESNET.replace("blocks: 2", "blocks: 3"))
    return p


def test_forward_page_expands_collapses_and_searches(browser, spec, tmp_path):
    out = tmp_path / "graph.html"
    assert main(["viz", str(spec), "--depth", "1", "-o", str(out)]) == 0
    text = out.read_text()
    assert not re.search(r"https?://|<link|<script src|@import", text)  # everything inline
    page, errors = open_page(browser, out)
    assert page.is_visible('.nd[data-id="stem"]') and page.is_visible('.blk[data-id="stage1"] > .hd')
    # depth 1: the copies are closed boxes; a click on one opens it, a second click closes it again
    assert page.is_visible('.blk.closed[data-id="stage1.1"]')
    assert not page.is_visible('.nd[data-id="stage1.1.conv1"]')
    page.click('.blk[data-id="stage1.1"] > .hd')
    assert page.is_visible('.nd[data-id="stage1.1.conv1"]')
    assert page.locator("#edges path").count() > 10  # edges drawn between what is visible
    page.click('.blk[data-id="stage1.1"] > .hd')
    assert not page.is_visible('.nd[data-id="stage1.1.conv1"]')
    # search by spec path opens the blocks holding it and marks it
    page.fill("#search", "stage1.2.conv2")
    assert page.is_visible('.nd.hit[data-id="stage1.2.conv2"]')
    assert "1 shown match" in page.inner_text("#hits")
    # hover details: op, arguments and shapes
    page.hover('.nd[data-id="stem"]')
    details = page.inner_text("#panel")
    assert "op: Conv2d" in details and "out: B x 8 x 16 x 16" in details
    assert errors == []


def test_backward_and_onnx_pages_load(browser, spec, tmp_path):
    # --depth 2: the later copies folded as in the PNG (the default draws this small network whole)
    assert main(["viz", str(spec), "--view", "backward", "--grads", "--depth", "2", "-o", str(tmp_path / "b.html")]) == 0
    page, errors = open_page(browser, tmp_path / "b.html")
    assert page.is_visible('.nd[data-id="loss"]') and page.is_visible('.blk[data-id="stage1"] > .hd')
    assert page.is_visible('.blk.closed[data-id="stage1.2"]')  # a later copy, folded as in the PNG
    page.click('.blk[data-id="stage1.2"] > .hd')
    assert page.is_visible('.nd[data-id="stage1.2.conv1.weight"]')
    page.hover('.nd[data-id="stage1.2.conv1.weight"]')
    assert "|grad|" in page.inner_text("#panel")
    assert errors == []

    onnx = tmp_path / "m.onnx"
    assert main(["export", str(spec), "--random", "-o", str(onnx)]) == 0
    assert main(["viz", str(onnx), "-o", str(tmp_path / "o.html")]) == 0
    page, errors = open_page(browser, tmp_path / "o.html")
    assert page.is_visible('.blk[data-id="stage1"] > .hd') and errors == []
