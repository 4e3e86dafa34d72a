"""torch module -> verified ONNX file, with torch.onnx.export (the torch 2.13 dynamo exporter).

    result = export_onnx(module, "model.onnx", spec=spec, network="model")

The module is exported in eval mode with one fresh example tensor per input; every symbolic dim of the
spec's inputs stays dynamic (or those named in `dynamic`), through `dynamic_shapes`. Input and output
names come from the spec, node names and metadata carry spec paths (see naming.py), the file metadata
says where it came from (see metadata.py). Nothing is kept unless every check of verify.py passes.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import onnx_ir as ir
import torch
from builder.core.errors import UserError
from builder.core.io_utils import atomic_output, check_writable
from builder.core.types import records

from . import dims, metadata, naming, rnn, runtime, signature, verify

TWO_GB = 2 * 1024**3


class ExportError(UserError):
    """torch.onnx.export could not export the network, or exported something we must not keep."""


@dataclass
class ExportResult:
    path: Path
    nodes: int
    size_bytes: int
    dynamic: list
    ranges: dict
    comparisons: list = field(default_factory=list)
    scopes: dict = field(default_factory=dict)
    external_data: bool = False
    fixed: dict = field(default_factory=dict)  # symbol -> (size, why) for each symbolic dim not kept dynamic

    @property
    def max_abs(self) -> float:
        return max((c.max_abs for c in self.comparisons), default=0.0)

    @property
    def shapes_checked(self) -> list[dict]:
        seen = []
        for c in self.comparisons:
            if c.sizes not in seen:
                seen.append(c.sizes)
        return seen


def export_onnx(module: torch.nn.Module, out, *, spec=None, network: str | None = None, graph=None,
                dynamic: list[str] | None = None, opset: int | None = None, labels=None,
                sizes: dict | None = None, tokenizer=None, data: dict | None = None) -> ExportResult:
    """Export, check and write `out` atomically; raises ExportError / VerificationError (UserErrors)."""
    out = check_writable(out)
    if graph is None and spec is not None:
        graph = spec.network(network).graph
    export_cfg = _export_section(spec)
    sig = signature.signature_of(module, graph, sizes or export_cfg.get("sizes"))
    chosen_by = "--dynamic" if dynamic is not None else "export.dynamic"
    if dynamic is None and export_cfg.get("dynamic") is not None:
        dynamic = list(export_cfg["dynamic"])
    dyn = signature.resolve_dynamic(sig, dynamic)
    fixed = {s: (sig.sizes[s], f"not in {chosen_by}") for s in sig.symbols if s not in dyn}
    opset = opset or export_cfg.get("opset")

    was_training = module.training
    module.eval()
    try:
        program = _torch_onnx_export(module, sig, dyn, opset, graph)
        rename_dims(program.model, sig, program.exported_program)
        ranges, problems = verify.exported_dim_ranges(program.exported_program, sig, dyn)
        problems += verify.onnx_input_problems(program.model.graph.inputs, sig, dyn)
        if problems:
            raise ExportError("; ".join(problems) + " (name the dims that may vary with --dynamic, or remove "
                              "the shape-dependent branch)")
        model = program.model
        blocks = graph.graph.get("blocks") if graph is not None else None
        known = set(graph.nodes) | set(blocks or {}) if graph is not None else None
        scopes = naming.name_nodes_by_spec_path(model, blocks, known)
        cases = _reference_cases(module, sig, dyn, ranges)
        _declare_output_dims(model, sig, cases)
        model.metadata_props.update(metadata.build_metadata(
            sig, spec=spec, network=network or getattr(graph, "graph", {}).get("network"), labels=labels,
            dynamic=dyn, ranges=ranges, prepared_inside="input_preparation" in module._modules, fixed=fixed,
            tokenizer=tokenizer, data=data, graph=graph))
        with atomic_output(out) as tmp:  # out: checked writable above
            external = _save(model, tmp)
            verify.check_structure(tmp)
            sess = runtime.session(tmp, "cpu")
            comparisons = verify.check_parity(sess, module, cases, _output_names(sig, model))
            size = sum(f.stat().st_size for f in tmp.parent.iterdir())
        return ExportResult(out, len(model.graph), size, dyn, ranges, comparisons, scopes, external, fixed)
    finally:
        module.train(was_training)


EXPORT_KEYS = ("dynamic", "opset", "sizes")


def _export_section(spec) -> dict:
    """The spec's `export:` section: dynamic: [B, T], opset: 18, sizes: {T: 16} (example sizes)."""
    from builder.core.errors import did_you_mean
    cfg = dict(getattr(spec, "export", None) or {})
    for key in cfg:
        if key not in EXPORT_KEYS:
            hint = did_you_mean(key, EXPORT_KEYS)
            raise UserError(f"export: unknown key '{key}' (known: {', '.join(EXPORT_KEYS)})"
                            + (f"; {hint}" if hint else ""))
    if "dynamic" in cfg and not (isinstance(cfg["dynamic"], list) and all(isinstance(d, str) for d in cfg["dynamic"])):
        raise UserError(f"export.dynamic must be a list of dim names like [B, T], got {cfg['dynamic']!r}")
    if "sizes" in cfg and not (isinstance(cfg["sizes"], dict) and all(isinstance(v, int) and v > 0 for v in cfg["sizes"].values())):
        raise UserError(f"export.sizes must map dim names to positive sizes like {{T: 16}}, got {cfg['sizes']!r}")
    if "opset" in cfg and not isinstance(cfg["opset"], int):
        raise UserError(f"export.opset must be a whole number, got {cfg['opset']!r}")
    return cfg


RECURRENT_OPS = ("RNN", "LSTM", "GRU")


def _torch_onnx_export(module, sig, dyn, opset, graph=None):
    """The dims carry the ranges the network allows. torch.export runs first, alone: in seconds, a dim it
    must fix to one size stops the export with a message naming dim and node (torch.onnx would fall back
    to a draft export and translate all of it first). Guards that only keep an inner size away from 1
    (torch's caution about broadcasting) go to torch.onnx's own capture, and verification at the
    smallest sizes decides. Recurrent networks go to torch.onnx whole: it traces them with its own
    while_loop kernels."""
    shapes = tuple(signature.dynamic_shapes(sig, dyn)[i.name] for i in sig.inputs)
    recurrent = graph is None or any(r.op in RECURRENT_OPS for r in records(graph))
    first_error = None
    with _quiet(), rnn.rnn_export_patches():
        if not recurrent:
            program, first_error, tried = _export_program(module, sig, shapes, dyn)
            if program is not None:
                return _translate(program, signature.example_inputs(sig, sig.sizes), sig, None, opset)
            if dims.fixes_a_dim(first_error):
                at = "; ".join(", ".join(f"{k}={v}" for k, v in t.items()) for t in tried)
                raise ExportError(dims.specialisation_message(first_error, sig, graph)
                                  + f" (tried example sizes {at})") from None
        args = signature.example_inputs(sig, sig.sizes)
        try:
            return _translate(module, args, sig, shapes, opset)
        except UserError:
            raise
        except Exception as e:  # torch.onnx / torch.export raise many types; report one line
            why = dims.specialisation_message(first_error or str(e), sig, graph)
            raise ExportError(why or f"torch.onnx.export failed: {_summary(e)}") from None


def _export_program(module, sig, shapes, dyn):
    """(torch.export's program or None, its error, the sizes tried). A guard that pins a dim may hold only
    at the example (a size inside the network that is 1 there): the export is tried again at other example
    sizes of the dynamic dims (signature.default_sizes' attempts) before the pinned dim is reported. The
    sizes of the last try become `sig.sizes`, unless every try pinned a dim (then the error is the first)."""
    keep = {**sig.given, **{s: sig.sizes[s] for s in sig.symbols if s not in dyn}}  # fixed dims stay put
    first_pin, tried = None, []
    for attempt in range(len(signature.SPREADS)):
        sizes = signature.default_sizes(sig, keep, attempt) if attempt else dict(sig.sizes)
        if sizes in tried:
            continue
        tried.append(sizes)
        try:
            program = torch.export.export(module, signature.example_inputs(sig, sizes), dynamic_shapes=shapes,
                                          strict=False)
        except UserError:
            raise
        except Exception as e:
            if not dims.fixes_a_dim(str(e)):  # not pinned here (torch.onnx's capture goes on at these sizes)
                sig.sizes = sizes
                return None, str(e), tried
            first_pin = first_pin or str(e)
            continue
        sig.sizes = sizes
        return program, None, tried
    return None, first_pin, tried


def _translate(model, args, sig, shapes, opset):
    return torch.onnx.export(
        model, args, dynamo=True, input_names=[i.name for i in sig.inputs], output_names=list(sig.outputs) or None,
        dynamic_shapes=shapes, opset_version=opset, external_data=False,
        custom_translation_table=rnn.translations(), verbose=False, optimize=True)


def rename_dims(model, sig, exported_program) -> None:
    """ONNX input and output dims named after the spec's dims (`B`, `H`, `H//2`) instead of torch's
    symbols (`s77`, `16*s74`); a dim whose expression cannot be written that way keeps torch's name."""
    placeholders = [n for n in exported_program.graph.nodes if n.op == "placeholder"]
    users = list(exported_program.graph_signature.user_inputs)
    by_name = {n.name: n for n in placeholders}
    mapping = {}
    for inp, ph_name in zip(sig.inputs, users):
        val = by_name[ph_name].meta.get("val")
        for want, got in zip(inp.shape, getattr(val, "shape", ())):
            if isinstance(want, str) and not isinstance(got, int):
                coeff, sym = got.node.expr.as_coeff_Mul()
                if sym.is_Symbol:
                    mapping[sym.name] = (want, int(coeff))
    for sym, r in sig.dims.items():  # the exporter may name a dim after its torch.export.Dim
        name = dims.dim_name(sym)
        mapping[name if r.multiple_of == 1 else f"{name}_over_{r.multiple_of}"] = (sym, r.multiple_of)
    for value in list(model.graph.inputs) + list(model.graph.outputs):
        if value.shape is not None:
            value.shape = ir.Shape([_spec_dim(d, mapping) for d in value.shape.dims])


def _spec_dim(d, mapping):
    if not isinstance(d, ir.SymbolicDim) or not d.value:
        return d
    text = dims.spec_text(d.value, mapping)
    return ir.SymbolicDim(text) if text else d


@contextlib.contextmanager
def _quiet():
    """The exporter logs warnings (optional torchvision ops) and prints progress; keep the CLI clean."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _summary(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:  # the exporter wraps the cause; its own line is the informative one
        if "Error:" in ln and not ln.startswith("Failed to export"):
            return ln[:400]
    return (lines[0] if lines else type(e).__name__)[:400]


def _reference_cases(module, sig, dyn, ranges):
    """(sizes, inputs, torch outputs) at each verification shape; fresh tensors per case."""
    cases = []
    all_sizes = signature.verification_sizes(sig, dyn, ranges)
    while len(all_sizes) < 3:  # static inputs: other random inputs at the one shape there is
        all_sizes.append(dict(all_sizes[0]))
    for k, sizes in enumerate(all_sizes):
        inputs = signature.example_inputs(sig, sizes, seed=1000 + k)
        try:
            expected = verify.torch_outputs(module, inputs)
        except Exception as e:
            raise ExportError(f"torch itself fails at {sizes}: {_summary(e)}") from None
        cases.append((sizes, inputs, expected))
    return cases


def _output_names(sig, model) -> list[str]:
    return list(sig.outputs) or [v.name for v in model.graph.outputs]


def _declare_output_dims(model, sig, cases) -> None:
    """Make ONNX output dims that vary with the inputs symbolic.

    torch 2.13 records some output dims at their example size (e.g. the sequence length of an LSTM's
    output); onnxruntime then warns and other runtimes may trust the wrong number. A dim whose torch
    value changes between the verification cases gets the name of the input symbol it follows."""
    if not cases:
        return
    changed = False
    for k, value in enumerate(model.graph.outputs):
        if value.shape is None:
            continue
        observed = [case[2][k].shape for case in cases if k < len(case[2])]
        dims = list(value.shape.dims)
        for axis, declared in enumerate(dims):
            seen = {shape[axis] for shape in observed if len(shape) == len(dims)}
            if len(seen) <= 1 or not isinstance(declared, int):
                continue
            symbol = next((s for s in sig.symbols
                           if all(case[0].get(s) == shape[axis] for case, shape in zip(cases, observed))),
                          f"{value.name}_dim{axis}")
            dims[axis] = ir.SymbolicDim(symbol)
            changed = True
        value.shape = ir.Shape(dims)
    if changed:  # intermediate shapes may carry the same stale size: let the runtime infer them
        for node in model.graph:
            for v in node.outputs:
                if not v.is_graph_output():
                    v.shape = None


def _initializer_bytes(model) -> int:
    total = 0
    for v in model.graph.initializers.values():
        if v.const_value is not None:
            total += v.const_value.nbytes
    return total


def _save(model, path: Path) -> bool:
    """One self-contained file, unless the weights pass 2 GB (protobuf's limit): then `<name>.data`."""
    external = _initializer_bytes(model) > TWO_GB - 64 * 1024**2
    ir.save(model, path, external_data=f"{path.name}.data" if external else None)
    return external


def describe(result: ExportResult) -> str:
    shapes = "; ".join(", ".join(f"{k}={v}" for k, v in s.items()) for s in result.shapes_checked)
    mb = result.size_bytes / 1e6
    dyn = ",".join(result.dynamic) or "none"
    n = len(result.shapes_checked)
    where = f"{n} shapes ({shapes})" if shapes else f"the static input shapes ({len(result.comparisons)} checks)"
    text = (f"wrote {result.path} ({mb:.2f} MB, {result.nodes} nodes, dynamic: {dyn}); onnxruntime matches "
            f"torch at {where}, max abs diff {result.max_abs:.2g}")
    arbitrated = [c for c in result.comparisons if c.ort_err64 is not None]
    if arbitrated:
        worst = max(arbitrated, key=lambda c: c.ort_err64 / max(c.torch_err64, 1e-30))
        text += (f"; {len(arbitrated)} comparisons within float32 rounding only (against float64: "
                 f"onnxruntime {worst.ort_err64:.2g}, torch float32 {worst.torch_err64:.2g})")
    if result.fixed:
        text += "; fixed: " + ", ".join(f"{k}={v} ({why})" for k, (v, why) in result.fixed.items())
    if result.ranges:
        text += "; valid dim ranges: " + ", ".join(
            f"{k} in [{lo}, {'inf' if hi == math.inf else hi}]" for k, (lo, hi) in result.ranges.items())
    return text
