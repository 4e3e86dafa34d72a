"""Small pure pieces of export: tolerance judgement, verification shapes, spec-path naming, sizes."""
import math

import numpy as np

from export import naming, signature, verify


class _Truth:
    def __init__(self, arrays):
        self.arrays = arrays

    def outputs(self, inputs):
        return self.arrays


def test_float32_rounding_is_judged_against_float64():
    truth = np.array([600.0, 1e-3, -250.0])
    torch32 = (truth + np.array([1.5e-4, 1e-4, 0])).astype(np.float32)
    close = (truth + np.array([-2e-4, -1.5e-4, 1e-4])).astype(np.float32)  # as accurate as torch
    far = (truth + np.array([0, 5e-3, 0])).astype(np.float32)  # a real error at a small value
    for actual, ok in ((close, True), (far, False)):
        result = verify.compare("y", {"B": 1}, torch32, actual)
        assert not result.ok  # the elementwise tolerance fails at the near-zero element
        judged = verify.judge_against_float64(result, 0, torch32, actual, _Truth([truth]), ())
        assert judged.ok is ok and judged.torch_err64 is not None
        assert "against float64" in judged.describe()


def test_integer_outputs_compare_exactly_and_nans_match_nans():
    assert verify.compare("i", {}, np.array([1, 2]), np.array([1, 3])).ok is False
    assert verify.compare("f", {}, np.array([np.nan, 1.0]), np.array([np.nan, 1.0])).ok is True
    assert verify.compare("f", {}, np.array([np.nan, 1.0]), np.array([0.0, 1.0])).ok is False


def test_verification_sizes_cover_batch_one_an_odd_batch_and_other_lengths():
    sig = signature.Signature([signature.InputSig("tokens", ("B", "T"), "int64", (0, 10))], ["y"])
    sig.sizes = signature.default_sizes(sig, {})
    assert sig.sizes == {"B": 2, "T": 8}
    cases = signature.verification_sizes(sig, ["B", "T"], {"T": (1, 10)})
    assert {c["B"] for c in cases} >= {1, 3} and {c["T"] for c in cases} >= {5, 8, 10}
    assert all(c["T"] <= 10 for c in cases)  # inside the range torch.export allowed
    assert signature.verification_sizes(sig, ["B"]) == [{"B": 2, "T": 8}, {"B": 1, "T": 8}, {"B": 3, "T": 8}]


def test_example_sizes_avoid_static_dims_and_each_other():
    sig = signature.Signature([signature.InputSig("x", ("B", 2, "T"))], ["y"])
    sizes = signature.default_sizes(sig, {})
    assert sizes["B"] not in (2,) and sizes["T"] not in (2, sizes["B"])


def test_padding_masks_never_mask_a_whole_row():
    import torch
    gen = torch.Generator().manual_seed(0)
    keep = signature._padding_mask((6, 5), torch.int64, gen, pad_value=0)
    pad = signature._padding_mask((6, 5), torch.bool, gen, pad_value=1)
    assert keep[:, 0].eq(1).all() and keep[0].eq(1).all() and keep.eq(0).any()
    assert not pad[:, 0].any() and pad.any()


def test_scope_levels_follow_blocks():
    assert naming.scope_levels("stage1.0.conv1") == ["stage1", "stage1.0", "stage1.0.conv1"]
    assert naming.scope_levels("h.0.attn.q", {"h": {}, "h.0": {}, "h.0.attn": {}}) == ["h", "h.0", "h.0.attn", "h.0.attn.q"]
    assert naming.scope_levels("lstm", {"x": {}}) == ["lstm"]
    assert naming.scope_levels("") == []


def test_ranges_bound_parsing():
    import sympy
    from torch.utils._sympy.numbers import int_oo
    assert verify._bound(int_oo) == math.inf and verify._bound(sympy.Integer(16)) == 16
