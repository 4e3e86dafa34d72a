"""Checks an exported file must pass before it is kept.

1. `onnx.checker.check_model(full_check=True)` and strict shape inference;
2. every dim meant to be dynamic is dynamic: in the exported program (not specialised to the example
   size, not narrowed to a range) and in the ONNX inputs (a `dim_param`, not a number);
3. onnxruntime agrees with torch at several input shapes, at rtol 1e-4 / atol 1e-5 elementwise. Where
   float32 rounding alone breaks that (deep networks with large outputs: GPT-2's logits reach |600| and
   torch float32 itself is 1.5e-4 away from float64 there), the module is run in float64 and the file is
   accepted only if onnxruntime is within 8x torch float32's own error of it; the message says so.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from builder.core.errors import UserError
from builder.ops.sampling import sampled_outputs

from . import dims

RTOL, ATOL = 1e-4, 1e-5


class VerificationError(UserError):
    """An exported file failed a check; the message names what and where, in one line."""


def check_structure(path) -> None:
    """The ONNX checker (full check) and strict shape inference over the saved file."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path), load_external_data=False)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VerificationError(f"ONNX check failed: {first}") from None


def exported_dim_ranges(exported_program, sig, dynamic: list[str]) -> tuple[dict, list[str]]:
    """Ranges torch.export allowed for each dynamic symbol, and the problems (specialised or narrowed dims).

    A dim torch.export turned into a number, or into an expression other than the m * Dim it was given
    for a `multiple_of: m` dim, or whose range is narrower than the one the graph allows (`sig.dims`:
    declarations and the sizes the network needs) is a problem: the ONNX graph would silently compute
    the branch taken for the example. A range other than [1, inf] is returned (the network needs a
    minimum size, or cannot take longer inputs, e.g. a position table)."""
    user_inputs = list(exported_program.graph_signature.user_inputs)
    placeholders = {n.name: n for n in exported_program.graph.nodes if n.op == "placeholder"}
    ranges, problems = {}, []
    for inp, ph_name in zip(sig.inputs, user_inputs):
        val = placeholders[ph_name].meta.get("val")
        if val is None:
            continue
        for axis, (want, got) in enumerate(zip(inp.shape, val.shape)):
            if not isinstance(want, str) or want not in dynamic:
                continue
            where = f"input '{inp.name}' dim {axis} ('{want}')"
            if isinstance(got, int):
                problems.append(f"{where} was specialised to {got} by torch.export")
                continue
            expr = got.node.expr
            declared = sig.dims.get(want) or dims.DimRange(want)
            vr = exported_program.range_constraints.get(expr)
            m = declared.multiple_of
            if vr is None or (m == 1 and len(expr.free_symbols) != 1) or (m > 1 and expr.as_coeff_Mul()[0] != m):
                problems.append(f"{where} became '{expr}' in the exported program")
                continue
            low, high = _bound(vr.lower), _bound(vr.upper)
            if dims.narrowed_beyond(declared, low, high):
                problems.append(f"{where} was narrowed to [{low}, {high}] by a shape-dependent branch")
            low, high = declared.low, declared.high if declared.high is not None else math.inf
            if (low, high) != (1, math.inf):
                ranges[want] = (low, high)
    return ranges, problems


def _bound(value) -> float:
    if getattr(value, "is_finite", True) is False or str(value) in ("int_oo", "oo", "inf"):
        return math.inf
    if str(value) in ("-int_oo", "-oo", "-inf"):
        return -math.inf
    return int(value)


def onnx_input_problems(model_proto_or_ir_inputs, sig, dynamic: list[str]) -> list[str]:
    """ONNX graph inputs: names in spec order, static dims equal, dynamic dims symbolic."""
    problems = []
    inputs = list(model_proto_or_ir_inputs)
    names = [v.name for v in inputs]
    if names != [i.name for i in sig.inputs]:
        return [f"ONNX inputs are {names}, the spec's are {[i.name for i in sig.inputs]}"]
    for inp, value in zip(sig.inputs, inputs):
        dims = list(value.shape.dims) if value.shape is not None else []
        if len(dims) != len(inp.shape):
            problems.append(f"ONNX input '{inp.name}' has rank {len(dims)}, the spec says {len(inp.shape)}")
            continue
        for axis, (want, got) in enumerate(zip(inp.shape, dims)):
            if isinstance(want, str) and want in dynamic:
                if isinstance(got, int):
                    problems.append(f"ONNX input '{inp.name}' dim {axis} ('{want}') is fixed at {got}")
            elif isinstance(want, int) and got != want:
                problems.append(f"ONNX input '{inp.name}' dim {axis} is {got}, the spec says {want}")
    return problems


@dataclass
class Comparison:
    sizes: dict
    output: str
    shape: tuple
    max_abs: float
    max_rel: float
    ok: bool
    # when the elementwise tolerance fails: the errors of torch float32 and of onnxruntime against a
    # float64 run of the same module (onnxruntime is accepted when it is as accurate as torch itself)
    torch_err64: float | None = None
    ort_err64: float | None = None

    def describe(self) -> str:
        text = (f"output '{self.output}' {list(self.shape)} at {_sizes(self.sizes)}: max abs diff "
                f"{self.max_abs:.3g}, max rel diff {self.max_rel:.3g} (rtol {RTOL:g}, atol {ATOL:g})")
        if self.ort_err64 is not None:
            text += (f"; against float64: onnxruntime error {self.ort_err64:.3g}, torch float32 error "
                     f"{self.torch_err64:.3g}")
        return text


def compare(name: str, sizes: dict, expected: np.ndarray, actual: np.ndarray) -> Comparison:
    if expected.shape != actual.shape:
        return Comparison(sizes, name, tuple(actual.shape), math.inf, math.inf, False)
    if expected.dtype.kind in "fc":
        e, a = expected.astype(np.float64), actual.astype(np.float64)
        both_nan = np.isnan(e) & np.isnan(a)
        diff = np.where(both_nan, 0.0, np.abs(e - a))
        diff = np.where(np.isnan(diff), np.inf, diff)
        ok = bool(np.all(diff <= ATOL + RTOL * np.abs(np.nan_to_num(e))))
        max_abs = float(diff.max()) if diff.size else 0.0
        rel = diff / np.maximum(np.abs(np.nan_to_num(e)), 1e-12)
        max_rel = float(rel.max()) if rel.size else 0.0
        return Comparison(sizes, name, tuple(expected.shape), max_abs, max_rel, ok)
    equal = expected == actual
    bad = float((~equal).sum())
    return Comparison(sizes, name, tuple(expected.shape), bad, bad, bool(equal.all()))


# onnxruntime may err by this many times torch float32's own rounding error (both against float64)
FLOAT32_NOISE_FACTOR = 8.0


def torch_outputs(module, inputs) -> list[np.ndarray]:
    with torch.inference_mode():
        out = module(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().cpu().numpy() for o in outs]


class Float64Reference:
    """The module run in float64, made on first use: the arbiter when float32 rounding alone breaks the
    elementwise tolerance (deep networks with large outputs, e.g. GPT-2's logits near zero)."""

    def __init__(self, module):
        self.module, self.copy = module, None

    def outputs(self, inputs) -> list[np.ndarray] | None:
        try:
            if self.copy is None:
                self.copy = copy.deepcopy(self.module).double().eval()
            args = [t.double() if t.is_floating_point() else t for t in inputs]
            return torch_outputs(self.copy, args)
        except Exception:  # some ops have no float64 kernel: no arbiter then
            return None


def judge_against_float64(result: Comparison, k: int, expected, actual, reference: Float64Reference,
                          inputs) -> Comparison:
    exact = reference.outputs(inputs) if expected.dtype.kind == "f" else None
    if exact is None or k >= len(exact):
        return result
    truth = exact[k].astype(np.float64)
    result.torch_err64 = float(np.max(np.abs(expected.astype(np.float64) - truth)))
    result.ort_err64 = float(np.max(np.abs(actual.astype(np.float64) - truth)))
    result.ok = result.ort_err64 <= FLOAT32_NOISE_FACTOR * result.torch_err64 + ATOL
    return result


def check_parity(session, module, cases: list[tuple[dict, tuple, list]], output_names: list[str]) -> list[Comparison]:
    """Run onnxruntime at each case (sizes, inputs, torch outputs); raise on the first mismatch."""
    input_names = [i.name for i in session.get_inputs()]
    reference = Float64Reference(module)
    sampled = sampled_outputs(module) if isinstance(module, torch.fx.GraphModule) else set()
    results = []
    for sizes, inputs, expected in cases:
        feed = {n: t.detach().cpu().numpy() for n, t in zip(input_names, inputs)}
        try:
            actual = session.run(None, feed)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidArgument types
            shapes = ", ".join(f"{n}={list(v.shape)}" for n, v in feed.items())
            raise VerificationError(f"onnxruntime failed at {shapes}: {_first_line(e)}") from None
        if len(actual) != len(expected):
            raise VerificationError(f"onnxruntime returned {len(actual)} outputs, torch {len(expected)}")
        for k, (name, exp, act) in enumerate(zip(output_names, expected, actual)):
            if exp.shape != act.shape:
                raise VerificationError(f"output '{name}' at {_sizes(sizes)}: onnxruntime shape "
                                        f"{list(act.shape)}, torch shape {list(exp.shape)}")
            if k in sampled:  # a random draw: only its shape (above) and dtype can agree
                if exp.dtype != act.dtype:
                    raise VerificationError(f"sampled output '{name}': onnxruntime dtype {act.dtype}, "
                                            f"torch dtype {exp.dtype}")
                continue
            result = compare(name, sizes, exp, act)
            if not result.ok:
                result = judge_against_float64(result, k, exp, act, reference, inputs)
            results.append(result)
            if not result.ok:
                raise VerificationError("onnxruntime differs from torch: " + result.describe())
    return results


def _sizes(sizes: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sizes.items()) or "the example shape"


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(e).__name__
