"""docs/reference/ops.md is generated from the op registry (builder/ops/reference.py) and cannot go stale:
every registered op (also one registered later, by a plug-in) gets its section with a summary, arguments
with types and defaults, inputs, outputs, a shape rule and its way to ONNX."""
from __future__ import annotations

import pytest
from torch import nn

from builder import ops
from builder.ops import reference as R
from builder.ops.registry import REGISTRY, OpDef, register


def test_the_checked_in_page_is_the_registry_rendered():
    assert R.PAGE.read_text(encoding="utf-8") == R.render(), \
        "docs/reference/ops.md is stale: run `python -m builder.ops.reference`"


def test_check_mode_fails_on_a_stale_page(tmp_path):
    page = tmp_path / "ops.md"
    page.write_text("# old\n", encoding="utf-8")
    assert R.main(["--check", "-o", str(page)]) == 1
    assert R.main(["-o", str(page)]) == 0 and R.main(["--check", "-o", str(page)]) == 0


def test_every_op_has_a_section_a_summary_and_a_shape_rule():
    page = R.render()
    for op in R.unique_ops():
        assert f"### `{op.name}`\n" in page
        assert op.summary(), f"{op.name}: no doc= and no docstring to take one from"
        assert R.shape_rule(op), f"{op.name}: no shape_doc= and no Shape section in torch's docstring"
        for alias in op.aliases:
            assert f"`{alias}`" in page
    assert {op.name for op in R.unique_ops()} | {a for op in R.unique_ops() for a in op.aliases} == set(ops.names())


def test_arguments_carry_the_constructors_types_and_defaults():
    conv = dict((name, (kind, default, note)) for name, kind, default, note in R.arguments(ops.get("Conv2d")))
    assert conv["in_channels"] == ("int", "", "inferred from the input")
    assert conv["out_channels"][2] == "required" and conv["kernel_size"][0] == "int | tuple[int, int]"
    assert conv["stride"][1] == "1" and conv["bias"] == ("bool", "True", "")
    concat = dict((name, default) for name, _, default, _ in R.arguments(ops.get("concat")))
    assert concat == {"dim": "-1"}                       # the build callable's own a.get("dim", -1)
    assert "`q` (required), `k`, `v`, `mask`" in R.inputs_text(ops.get("attention"))
    assert R.outputs_text(ops.get("LSTM")) == "ports `output`, `h`, `c`"


class Swish(nn.Module):
    """x * sigmoid(beta * x), a plug-in's op."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta


def test_an_op_registered_later_is_picked_up_with_its_build_docstring():
    op = register(OpDef(name="swish_for_docs", infer=lambda ctx: ctx.shapes[0], build=Swish, arg_names=("beta",),
                        category="activation", shape_doc="the shape of x"))
    try:
        section = R.op_section(op)
        assert "x * sigmoid(beta * x), a plug-in's op." in section
        assert "| `beta` | `float` | `1.0` |  |" in section and "### `swish_for_docs`" in R.render()
    finally:
        del REGISTRY["swish_for_docs"]
    assert "swish_for_docs" not in R.render()


@pytest.mark.parametrize("name", ["split", "reshape", "RNN", "MultiheadAttention", "add"])
def test_ops_that_had_no_description_now_have_one(name):
    assert ops.get(name).doc
