"""A verified fp32 ONNX file -> a smaller one: int8 through onnxruntime.quantization, or fp16 through
onnxconverter-common, checked against torch at a tolerance that fits the precision.

    dynamic  int8 weights (per channel), activations quantised at run time; needs no data
    static   int8 weights (per channel) and uint8 activations (QDQ), activation ranges calibrated on a
             sample of the training split (MinMax)
    fp16     float16 weights and arithmetic; inputs and outputs stay float32 (keep_io_types), so callers
             feed and read the same arrays as the fp32 file

The file keeps the fp32 file's `builder.*` metadata (preparation, class names, data layout) and adds
`builder.precision`. The comparison against torch is max |quantised - torch| <= tolerance x max |torch|
(per output, over the sample), with TOLERANCE per mode: fp16 keeps ~3 decimal digits per op, int8 256
levels per tensor, and both errors compound through the layers.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from builder.core.errors import UserError
from builder.core.io_utils import atomic_output, check_writable

from . import metadata, verify

MODES = ("dynamic", "static", "fp16")
TOLERANCE = {"fp16": 1e-2, "dynamic": 0.1, "static": 0.1}  # of the largest |torch output|
CALIBRATION_BATCH = 16


class QuantizeError(UserError):
    """The quantiser failed, or the quantised file strays from torch beyond the mode's tolerance."""


@dataclass
class Check:
    """The quantised file against torch on one sample: per output, max abs diff and the bound it met."""
    max_abs: float
    bound: float
    rows: int
    source: str  # "the test split", "random example inputs", ...


def quantize_file(src, out, mode: str, calibration: dict[str, np.ndarray] | None = None) -> Path:
    """Write the `mode` version of the ONNX file `src` to `out` (atomically), metadata carried over."""
    if mode not in MODES:
        raise UserError(f"--quantize {mode}: expected one of {', '.join(MODES)}")
    out, src = check_writable(out), Path(src).resolve()
    props = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    with tempfile.TemporaryDirectory() as tmp, atomic_output(out.resolve()) as target, _quiet(), _working_in(tmp):
        work = Path(tmp) / "model.onnx"
        try:
            if mode == "fp16":
                from onnxconverter_common.float16 import convert_float_to_float16
                model = _separate_outputs(onnx.load(str(src)))
                onnx.save(convert_float_to_float16(model, keep_io_types=True), str(work))
            else:
                _int8(Path(src), work, mode, calibration, Path(tmp))
        except UserError:
            raise
        except Exception as e:  # the quantisers raise many types; one line
            raise QuantizeError(f"--quantize {mode} failed: {verify._first_line(e)}") from None
        model = onnx.load(str(work))
        kept = {p.key: p.value for p in model.metadata_props}
        kept.update({k: v for k, v in props.items() if k.startswith(metadata.PREFIX)})
        kept[metadata.PREFIX + "precision"] = "float16" if mode == "fp16" else f"int8 ({mode})"
        del model.metadata_props[:]
        for key, value in kept.items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(target))
        verify.check_structure(target)
    return out


def _separate_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """A graph output that other nodes also read (BERT's last_hidden_state feeds its pooler) gets its own
    Identity: onnxconverter-common casts such an output back to float32 in place, and its readers would
    then take float32 where float16 is declared."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    read = {name for node in graph.node for name in node.input}
    shared = outputs & read
    if not shared:
        return model
    for node in graph.node:
        node.output[:] = [f"{n}__inner" if n in shared else n for n in node.output]
        node.input[:] = [f"{n}__inner" if n in shared else n for n in node.input]
    for name in sorted(shared):
        graph.node.append(onnx.helper.make_node("Identity", [f"{name}__inner"], [name], name=f"{name}/output"))
    del graph.value_info[:]  # intermediate types are inferred again by the converter
    return model


def _int8(src: Path, work: Path, mode: str, calibration, tmp: Path) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = tmp / "pre.onnx"
    try:  # shape inference and graph fusions the quantiser relies on
        quant_pre_process(str(src), str(prepared))
    except Exception:  # its symbolic shape inference gives up on some graphs (BERT's masks): ONNX's own then
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    if mode == "dynamic":
        quantize_dynamic(str(prepared), str(work), weight_type=QuantType.QInt8, per_channel=True)
        return
    if not calibration:
        raise QuantizeError("--quantize static needs calibration data (the spec's train.data)")
    n = len(next(iter(calibration.values())))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{k: v[s:s + CALIBRATION_BATCH] for k, v in calibration.items()}
                                 for s in range(0, n, CALIBRATION_BATCH)])

        def get_next(self):
            return next(self.batches, None)

    # uint8 activations with int8 weights (U8S8): onnxruntime's x86 CPU kernels fuse it; int8 activations
    # (S8S8) fell back to dequantised float ops there, 10x slower than fp32 on BERT-4 (benchmarks/serve_load.py)
    quantize_static(str(prepared), str(work), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def check_against_torch(session, module, feed: dict[str, np.ndarray], mode: str, source: str,
                        batch: int = 64) -> Check:
    """Run the quantised session and torch on the same rows; raise when an output strays past the bound."""
    import torch

    names = [i.name for i in session.get_inputs()]
    n = len(next(iter(feed.values())))
    was_training = module.training
    module.eval()
    try:
        return _compare(session, module, feed, mode, source, batch, names, n)
    finally:
        module.train(was_training)


def _compare(session, module, feed, mode, source, batch, names, n) -> Check:
    import torch

    worst, bound_used = 0.0, 0.0
    for start in range(0, n, batch):
        part = {k: v[start:start + batch] for k, v in feed.items()}
        expected = verify.torch_outputs(module, [torch.from_numpy(np.ascontiguousarray(part[k])) for k in names])
        actual = session.run(None, part)
        for k, (exp, act) in enumerate(zip(expected, actual)):
            if exp.dtype.kind != "f":
                continue
            bound = TOLERANCE[mode] * float(np.max(np.abs(exp))) + verify.ATOL
            diff = float(np.max(np.abs(exp.astype(np.float64) - act.astype(np.float64))))
            if not diff <= bound:
                name = session.get_outputs()[k].name
                raise QuantizeError(f"--quantize {mode}: output '{name}' differs from torch by {diff:.3g} on "
                                    f"{source}, beyond the {mode} tolerance {TOLERANCE[mode]:g} x max |torch| "
                                    f"= {bound:.3g}")
            if diff / bound >= worst / max(bound_used, 1e-30):
                worst, bound_used = diff, bound
    return Check(worst, bound_used, n, source)


def size_of(path) -> int:
    path = Path(path)
    extra = path.with_name(path.name + ".data")
    return path.stat().st_size + (extra.stat().st_size if extra.exists() else 0)


@contextlib.contextmanager
def _working_in(folder):
    """The quantisers' shape inference saves large models' weights beside the current folder (uuid-named
    .data files, left behind when it gives up): let that be a temporary folder, not the user's."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def _quiet():
    """onnxruntime.quantization logs and warns about every op it leaves in float; keep the CLI clean."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


@dataclass
class QuantizeReport:
    path: Path
    mode: str
    size_before: int
    size_after: int
    check: Check
    metric: str | None = None  # "accuracy" | "r2x100"
    before: float | None = None
    after: float | None = None
    split: str = ""
    rows: int = 0
    max_drop: float = 1.0

    @property
    def drop(self) -> float:
        return (self.before - self.after) if self.before is not None else 0.0


def quantize_export(module, fp32_path, out, mode: str, *, spec=None, checkpoint=None, max_drop: float = 1.0,
                    calibration_rows: int = 128, verify_rows: int = 256, graph=None) -> QuantizeReport:
    """The `mode` file of the verified fp32 file at `fp32_path`, written to `out` only when it stays within
    the mode's tolerance of torch and its metric on the test split drops by at most `max_drop` points.
    `graph` (the network's) gives random example inputs their value ranges when the spec has no data."""
    from . import predict, runtime, signature, split_data

    sample = None
    if mode == "static" or split_data.spec_data(spec):
        sample = split_data.load_sample(spec, module, checkpoint, calibration_rows)
    with tempfile.TemporaryDirectory() as tmp:
        work = quantize_file(fp32_path, Path(tmp) / Path(out).name, mode,
                             sample.calibration if sample is not None else None)
        session = runtime.session(work, "cpu")
        if sample is not None and sample.test is not None:
            feed = {k: v[:verify_rows] for k, v in sample.test.items()}
            source = f"{len(next(iter(feed.values())))} rows of the {sample.test_split} split"
        else:
            sig = signature.signature_of(module, graph, None)
            feed = {i.name: t.numpy() for i, t in zip(sig.inputs, signature.example_inputs(sig, sig.sizes, seed=7))}
            source = "random example inputs"
        check = check_against_torch(session, module, feed, mode, source)
        report = QuantizeReport(Path(out), mode, size_of(fp32_path), size_of(work), check, max_drop=max_drop)
        if sample is not None and sample.test is not None and sample.truth is not None:
            outputs = [next(iter(predict.predict(predict.OnnxRunner(p, "cpu"), sample.test, 256).values()))
                       for p in (fp32_path, work)]
            (report.metric, report.before), (_, report.after) = (split_data.metric(o, sample.truth) for o in outputs)
            report.split, report.rows = sample.test_split, len(sample.truth)
            if report.drop > max_drop:
                raise QuantizeError(f"--quantize {mode}: {_metric_text(report)} on the {report.split} split drops "
                                    f"{report.drop:.2f} points, more than --max-drop {max_drop:g}; nothing written")
        with atomic_output(check_writable(out)) as target:
            target.write_bytes(work.read_bytes())
    return report


def _metric_text(r: QuantizeReport) -> str:
    name = "accuracy" if r.metric == "accuracy" else "R2 x 100"
    return f"{name} {r.before:.2f} -> {r.after:.2f}"


def describe(r: QuantizeReport) -> str:
    precision = "float16" if r.mode == "fp16" else f"int8 {r.mode}"
    text = (f"wrote {r.path} ({precision}): {r.size_before / 1e6:.2f} MB -> {r.size_after / 1e6:.2f} MB "
            f"({r.size_before / max(r.size_after, 1):.1f}x smaller); ")
    if r.metric:
        text += (f"{_metric_text(r)} on the {r.split} split ({r.rows} rows, {r.after - r.before:+.2f} points, "
                 f"--max-drop {r.max_drop:g}); ")
    else:
        text += "metric not measured (the spec's data has no labelled test split); "
    return text + (f"onnxruntime matches torch on {r.check.source} within the {precision} tolerance "
                   f"{TOLERANCE[r.mode]:g} x max |torch| (max abs diff {r.check.max_abs:.2g}, bound "
                   f"{r.check.bound:.2g})")
