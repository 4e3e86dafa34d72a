"""Export's example sizes (issue 20 item 4): examples no guard can pin.

The example of a dynamic dim was its minimum, so a size inside the network was 1 there (five 2x2 pools
of H = 32) and torch.export pinned the dim ("guard (W // 32) == 1"). Now an example is well above every
minimum (>= 2 * min + 1), distinct per dim, a multiple where one is declared and within a declared max;
when torch still pins a dim, the export retries at other sizes before reporting.
"""
from __future__ import annotations

import random

import pytest

import builder
from export import dims as D
from export import signature
from export.dims import DimRange
from export.onnx_export import _export_program, export_onnx

POOLS = """spec: 1
name: pools
dims: {H: {min: 32}, W: {min: 32}}
inputs:
  x: {shape: [B, 3, H, W]}
nodes:
  c: {op: Conv2d, out_channels: 4, kernel_size: 3, padding: 1}
  p1: {op: MaxPool2d, kernel_size: 2}
  p2: {op: MaxPool2d, kernel_size: 2}
  p3: {op: MaxPool2d, kernel_size: 2}
  p4: {op: MaxPool2d, kernel_size: 2}
  p5: {op: MaxPool2d, kernel_size: 2}
  f: {op: Flatten}
"""


def test_five_pools_over_a_declared_minimum_export_with_dynamic_height_and_width(tmp_path):
    spec = builder.load(POOLS)
    result = export_onnx(builder.build(spec), tmp_path / "p.onnx", spec=spec)
    assert result.dynamic == ["B", "H", "W"] and result.fixed == {}
    example = result.shapes_checked[0]
    assert example["H"] >= 65 and example["W"] >= 65 and example["H"] != example["W"]
    assert {"B": 2, "H": 32, "W": 32} in result.shapes_checked  # the minimum is still verified


def test_default_examples_are_well_above_the_minimum_distinct_and_allowed():
    """Property over random declared ranges: >= 2 * min + 1 (unless the max forbids it), a multiple of
    multiple_of, within [min, max], distinct per dim and from the static dims, on every retry attempt."""
    rng = random.Random(0)
    for case in range(300):
        names = rng.sample(["H", "W", "T", "S", "D"], rng.randint(1, 4))
        shape = ["B", 3] + names
        sig = signature.Signature([signature.InputSig("x", tuple(shape))], ["y"])
        for n in names:
            m = rng.choice([1, 1, 2, 8, 16])
            low = m * rng.randint(1, 8) if rng.random() < 0.8 else m  # a valid range: a multiple in it
            high = rng.choice([None, None, low + m * rng.randint(0, 40)])
            sig.dims[n] = DimRange(n, low, high, m)
        for attempt in range(len(signature.SPREADS)):
            sizes = signature.default_sizes(sig, {}, attempt)
            what = (case, attempt, sig.dims, sizes)
            assert sizes["B"] >= 2, what
            picked = [sizes[n] for n in names]
            if all(r.high is None or (r.high - r.low) // r.multiple_of >= 6 for r in sig.dims.values()):
                assert len(set(picked)) == len(picked) and 3 not in picked, what
            for n in names:
                r, v = sig.dims[n], sizes[n]
                assert v % r.multiple_of == 0 and r.low <= v and (r.high is None or v <= r.high), what
                well_above = signature.SPREADS[attempt] * r.low + 1
                if r.low > 1 and (r.high is None or r.high >= well_above + 5 * r.multiple_of):
                    assert v >= well_above, what
                elif r.low > 1:
                    assert v >= min(r.high, well_above) - 5 * r.multiple_of, what  # near the max


def random_chain(rng):
    """A conv/pool chain over [B, 3, H, W], sometimes with a declared minimum or multiple, ending in a
    Flatten (so the output size is a product of the last sizes: a guard there would pin H or W)."""
    layers = []
    for j in range(rng.randint(2, 5)):
        kind = rng.choice(["pool2", "pool3", "conv3", "convs2"])
        layers.append(f"  l{j}: " + {
            "pool2": "{op: MaxPool2d, kernel_size: 2}",
            "pool3": "{op: AvgPool2d, kernel_size: 3}",
            "conv3": "{op: Conv2d, out_channels: 2, kernel_size: 3}",
            "convs2": "{op: Conv2d, out_channels: 2, kernel_size: 3, stride: 2, padding: 1}"}[kind])
    declared = rng.choice(["", "dims: {H: {min: 40}, W: {min: 40}}\n", "dims: {H: {multiple_of: 8}}\n"])
    return (f"spec: 1\nname: chain\n{declared}inputs:\n  x: {{shape: [B, 3, H, W]}}\nnodes:\n"
            + "\n".join(layers) + "\n  flat: {op: Flatten}\n")


@pytest.mark.parametrize("seed", range(3))
def test_generated_chains_export_with_every_dim_dynamic(seed, tmp_path):
    text = random_chain(random.Random(seed))
    spec = builder.load(text)
    graph = spec.network().graph
    result = export_onnx(builder.build(spec), tmp_path / "c.onnx", spec=spec)
    assert result.dynamic == ["B", "H", "W"] and result.fixed == {}, text
    example, low = result.shapes_checked[0], {n: graph.graph["dims"][n]["min"] for n in ("H", "W")}
    assert example["H"] != example["W"], text
    assert all(example[n] >= 2 * low[n] + 1 for n in low if low[n] > 1), (text, example, low)
    assert {"B": 2, **low} in result.shapes_checked or {"B": 3, **low} in result.shapes_checked, text


def test_a_pinned_example_is_retried_at_other_sizes():
    """The old examples (the minimum, H=32 W=33) make torch pin H and W; the export tries again at the
    next attempt's sizes and keeps those that worked."""
    spec = builder.load(POOLS)
    module = builder.build(spec).eval()
    sig = signature.signature_of(module, spec.network().graph)
    sig.sizes = {"B": 2, "H": 32, "W": 33}
    shapes = tuple(signature.dynamic_shapes(sig, sig.symbols)[i.name] for i in sig.inputs)
    program, error, tried = _export_program(module, sig, shapes, sig.symbols)
    assert program is not None or not D.fixes_a_dim(error)  # torch.onnx's capture goes on from here
    assert tried == [{"B": 2, "H": 32, "W": 33}, signature.default_sizes(sig, {}, 1)] and sig.sizes == tried[1]
