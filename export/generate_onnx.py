"""A language model as two ONNX files for generation, and the generation loop over them in onnxruntime.

    export_generation(module, "gpt_onnx/", spec=spec, tokenizer=tok)   # prefill.onnx, decode.onnx, ...
    decoder = OnnxDecoder("gpt_onnx/")                                  # builder.generation.loop's Decoder

The two files are the prefill and decode modules builder.generation.kv_cache derives from the graph, exported with
dynamic batch, prompt length and past length, each verified against torch in onnxruntime before anything
is kept. Beside them: `generation.json` (the token input, the cache tensors and their axes, the context)
and the model's `vocab.json` or `tokenizer.json`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from builder.generation import kv_cache
from builder.core.errors import UserError

from . import metadata, runtime, verify
from builder.core.io_utils import atomic_output
from .onnx_export import ExportError, _quiet, _summary

PREFILL, DECODE, MANIFEST = "prefill.onnx", "decode.onnx", "generation.json"


def _names(entries, prefix):
    return [f"{prefix}.{e.name}" for e in entries]


def _dims(entries, batch, past):
    """dynamic_shapes of the cache tensors: the batch axis and, for keys/values, the past-length axis."""
    return [{e.batch_axis: batch, **({e.time_axis: past} if e.time_axis is not None else {})} for e in entries]


def export_generation(module, out_dir, *, spec=None, tokenizer=None, opset=None) -> dict:
    """Write prefill.onnx, decode.onnx, generation.json (and the tokenizer) into `out_dir`; returns the
    manifest with the largest difference seen in verification. Raises a UserError when the network
    cannot be cached (naming the node) or the export does not verify."""
    net = module.build_info.network
    plan = kv_cache.plan(net)
    if not plan.ok:
        raise ExportError(f"--generate needs a key/value cache and {net.name} has none: {plan.reason}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: is a file; --generate writes a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{out_dir}: cannot create the folder: {e.strerror or e}") from None
    module.eval()
    prefill, decode = kv_cache.derive(module, plan, False).eval(), kv_cache.derive(module, plan, True).eval()
    tok_name = plan.token_input
    present, past = _names(plan.entries, "present"), _names(plan.entries, "past")
    batch, length, past_len = (torch.export.Dim(n, min=1) for n in ("batch", "length", "past"))
    vocab_size = int(kv_cache.logits_shape(net)[-1])
    manifest = {"token_input": tok_name, "context": plan.context, "vocab_size": vocab_size,
                "cache": [{"name": e.name, "batch_axis": e.batch_axis, "time_axis": e.time_axis}
                          for e in plan.entries]}
    meta = {"spec": getattr(spec, "name", "") or "", "network": net.name, "version": metadata.builder_version(),
            "generation": json.dumps(manifest), **metadata.vocabulary_metadata(tokenizer)}
    example = _tokens(2, 5, vocab_size, seed=0)
    with torch.no_grad():
        cache = prefill(example)[1:]
    with atomic_output(out_dir / DECODE) as tmp:
        folder = tmp.parent
        _export(prefill, (example,), [tok_name], ["logits", *present],
                ({0: batch, 1: length},), folder / PREFILL, meta, opset)
        _export(decode, (example[:, :1], *cache), [tok_name, *past], ["logits", *present],
                ({0: batch}, *_dims(plan.entries, batch, past_len)), folder / DECODE, meta, opset)
        worst = _verify(folder, prefill, decode, vocab_size)
        manifest["max_abs_diff"] = worst
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if tokenizer is not None:
            name, text = tokenizer.file()
            (folder / name).write_text(text, encoding="utf-8")
    return manifest


def _tokens(b, t, vocab, seed):
    return torch.randint(0, vocab, (b, t), generator=torch.Generator().manual_seed(seed))


def _export(module, args, input_names, output_names, dynamic, path, meta, opset):
    from . import rnn
    try:
        with _quiet(), rnn.rnn_export_patches():
            program = torch.onnx.export(module, args, dynamo=True, input_names=input_names,
                                        output_names=output_names, dynamic_shapes=dynamic, opset_version=opset,
                                        external_data=False, custom_translation_table=rnn.translations(),
                                        optimize=True, verbose=False)
    except UserError:
        raise
    except Exception as e:  # torch.export raises many types; one line
        raise ExportError(f"torch.onnx.export of {path.name} failed: {_summary(e)}") from None
    program.model.metadata_props.update({metadata.PREFIX + k: v for k, v in meta.items()})
    import onnx_ir as ir
    ir.save(program.model, path)
    verify.check_structure(path)


def _verify(folder, prefill, decode, vocab):
    """onnxruntime against torch: prefill at two batch/length pairs, then decode steps from those caches."""
    worst = 0.0
    sessions = {name: runtime.session(folder / name, "cpu") for name in (PREFILL, DECODE)}
    for k, (b, t) in enumerate(((1, 3), (3, 7))):
        ids = _tokens(b, t, vocab, seed=100 + k)
        expected = verify.torch_outputs(prefill, (ids,))
        results = verify.check_parity(sessions[PREFILL], prefill, [({"batch": b, "length": t}, (ids,), expected)],
                                      _outputs(sessions[PREFILL]))
        cache = [torch.from_numpy(np.ascontiguousarray(a)) for a in expected[1:]]
        for step in range(2):
            new = _tokens(b, 1, vocab, seed=200 + 10 * k + step)
            inputs = (new, *cache)
            expected = verify.torch_outputs(decode, inputs)
            results += verify.check_parity(sessions[DECODE], decode,
                                           [({"batch": b, "past": t + step}, inputs, expected)],
                                           _outputs(sessions[DECODE]))
            cache = [torch.from_numpy(np.ascontiguousarray(a)) for a in expected[1:]]
        worst = max([worst] + [r.max_abs for r in results])
    return worst


def _outputs(session):
    return [o.name for o in session.get_outputs()]


def is_generation_folder(path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / MANIFEST).is_file() and (path / DECODE).is_file()


class OnnxDecoder:
    """builder.generation.loop's Decoder over the exported files: the prompt through prefill.onnx, then one
    token at a time through decode.onnx, the cache held as numpy arrays between the calls."""

    def __init__(self, folder, provider: str = "cpu", threads: int | None = None):
        folder = Path(folder)
        if not is_generation_folder(folder):
            raise UserError(f"{folder}: not an export of `build export --generate` (no {MANIFEST} and {DECODE})")
        from builder.text.readers import read_json_file
        self.manifest = read_json_file(folder / MANIFEST, "generation manifest")
        if not isinstance(self.manifest, dict) or not isinstance(self.manifest.get("token_input"), str):
            raise UserError(f"{folder / MANIFEST}: not a generation manifest (no token_input)")
        self.prefill = runtime.session(folder / PREFILL, provider, threads)
        self.decode = runtime.session(folder / DECODE, provider, threads)
        self.token_input = self.manifest["token_input"]
        self.context = self.manifest.get("context")
        self.vocab_size = self.manifest.get("vocab_size")
        self.past_names = [i.name for i in self.decode.get_inputs()][1:]
        self.cache, self.length = None, 0

    def start(self, ids):
        ids = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids, dtype=np.int64)
        if self.context is not None and ids.shape[1] > self.context:
            ids = ids[:, -self.context:]
        logits, *self.cache = self.prefill.run(None, {self.token_input: ids})
        self.length = ids.shape[1]
        return torch.from_numpy(logits[:, -1])

    def step(self, ids, new):
        if self.context is not None and self.length >= self.context:
            return self.start(ids)
        feed = {self.token_input: np.asarray(new.cpu(), dtype=np.int64), **dict(zip(self.past_names, self.cache))}
        logits, *self.cache = self.decode.run(None, feed)
        self.length += 1
        return torch.from_numpy(logits[:, -1])
