"""The default pictures of every zoo spec, forward and backward, stay readable: at most 150 nodes and
4,000 px on each side (graphviz's own layout at 96 dpi, fonts at their normal size)."""

from pathlib import Path

import pytest

import builder
from viz.backward import backward_dot
from viz.dot_render import write_picture
from viz.fold import drawn, layout_px
from viz.forward import forward_dot
from viz.step import one_step

ROOT = Path(__file__).resolve().parents[1]
ZOO = sorted(p for p in (ROOT / "specs").glob("*.yaml") if "." not in p.stem)  # not the weight maps
MAX_NODES, MAX_PX = 150, 4000


def assert_readable(dot, what):
    nodes, _ = drawn(dot)
    assert len(nodes) <= MAX_NODES, f"{what}: {len(nodes)} nodes"
    size = layout_px(dot.to_dot())
    assert size is not None, "graphviz's dot is needed (setup.sh installs it)"
    assert max(size) <= MAX_PX, f"{what}: {size[0]:.0f} x {size[1]:.0f} px"


@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_default_pictures_within_limits(path):
    spec = builder.load(path)
    for name, net in spec.networks.items():
        assert_readable(forward_dot(net.graph), f"{path.stem}/{name} forward")
        step = one_step(spec, name if len(spec.networks) > 1 else None)
        assert_readable(backward_dot(step.trace, net.graph, grads=True, name=path.stem),
                        f"{path.stem}/{name} backward")


def test_layout_size_is_the_png_size(tmp_path):
    """The limit is checked on graphviz's layout: the PNG written has that size."""
    from PIL import Image

    dot = forward_dot(builder.load(ROOT / "specs" / "lenet5.yaml").network().graph)
    w, h = layout_px(dot.to_dot())
    with Image.open(write_picture(dot.to_dot(), tmp_path / "f.png", "png")) as im:
        assert abs(im.size[0] - w) <= 2 and abs(im.size[1] - h) <= 2, (im.size, w, h)
