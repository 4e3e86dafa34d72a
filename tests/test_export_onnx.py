"""`build export`: real specs through torch.onnx.export (dynamo), verified files, and the traps of torch 2.13."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import builder
from builder.commands.cli import main
from export.onnx_export import ExportError, export_onnx
from export.verify import VerificationError

ROOT = Path(__file__).resolve().parents[1]
TINY_RESNET = ROOT / "specs" / "examples" / "tiny_resnet.yaml"

SEQ = """
spec: 1
name: tiny-{kind}
inputs:
  tokens: {{shape: [B, T], dtype: int64}}
nodes:
  emb: {{op: Embedding, num_embeddings: 12, embedding_dim: 8}}
  rnn: {{op: {kind}, hidden_size: 16, num_layers: 2, batch_first: true}}
  head: {{op: Linear, in: rnn.output, out_features: 12}}
outputs: [head, rnn.h]
"""

GAN = """
spec: 1
name: tiny-gan
networks:
  generator:
    inputs: {z: {shape: [B, 2]}}
    nodes:
      fc: {op: Linear, out_features: 16}
      act: {op: Tanh}
      out: {op: Linear, out_features: 4}
    outputs: [out]
  discriminator:
    inputs: {x: {shape: [B, 4]}}
    nodes:
      fc: {op: Linear, out_features: 8}
      out: {op: Linear, out_features: 1}
    outputs: [out]
"""


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def meta(model):
    return {p.key: p.value for p in model.metadata_props}


def leftovers(folder: Path, name: str):
    return [p.name for p in folder.iterdir() if p.name.startswith(f".{name}")]


def test_resnet_cli_export_is_one_verified_file(tmp_path, capsys):
    out = tmp_path / "r.onnx"
    code = main(["export", str(TINY_RESNET), "--set", "width=4", "--set", "blocks=1", "--random", "-o", str(out)])
    assert code == 0
    assert "onnxruntime matches torch at 3 shapes" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.onnx"]  # self-contained, no temp left
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["x"] and dims(model.graph.input[0]) == ["B", 3, 32, 32]
    assert [o.name for o in model.graph.output] == ["head"] and dims(model.graph.output[0]) == ["B", 10]
    names = [n.name for n in model.graph.node]
    assert "/stem/Conv" in names
    # grouped as the spec is (the exporter folds each eval-mode BatchNorm into the Conv before it)
    assert "/stage1/stage1.0/stage1.0.bn1/Conv" in names and "/stage1/stage1.0/stage1.0.sum/Add" in names
    spec = builder.load(TINY_RESNET, width=4, blocks=1)
    m = meta(model)
    assert m["builder.spec"] == "tiny-resnet" and m["builder.spec_hash"] == spec.hash()
    assert m["builder.version"] == builder.__version__
    assert json.loads(m["builder.dynamic"]) == ["B"]
    paths = {p.value for n in model.graph.node for p in n.metadata_props if p.key == "builder.spec_path"}
    assert {"stem", "stage1.0.bn1", "stage1.0.out", "head"} <= paths


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_recurrent_nets_keep_a_dynamic_sequence_length(tmp_path, kind):
    # one process, several recurrent exports in a row: the second must not freeze the length either
    spec = builder.load(SEQ.format(kind=kind))
    module = builder.build(spec)
    module(torch.zeros(2, 5, dtype=torch.int64))  # an eager call first fills torch's dispatch cache
    result = export_onnx(module, tmp_path / "s.onnx", spec=spec)
    assert result.dynamic == ["B", "T"]
    assert {s["T"] for s in result.shapes_checked} >= {5, 8, 11}
    assert {s["B"] for s in result.shapes_checked} >= {1, 3}
    model = onnx.load(str(tmp_path / "s.onnx"))
    assert dims(model.graph.input[0]) == ["B", "T"]
    assert dims(model.graph.output[0]) == ["B", "T", 12]  # not frozen at the example length
    assert kind.upper() in {n.op_type for n in model.graph.node}  # one ONNX recurrent op, not unrolled
    assert any(n.name.startswith("/rnn/") for n in model.graph.node)
    sess = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
    tokens = torch.randint(0, 12, (2, 23))
    with torch.inference_mode():
        want = module(tokens)
    got = sess.run(None, {"tokens": tokens.numpy()})
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5)


def test_dynamic_flag_fixes_the_other_dims(tmp_path, capsys):
    spec_file = tmp_path / "gru.yaml"
    spec_file.write_text(SEQ.format(kind="GRU"))
    out = tmp_path / "g.onnx"
    assert main(["export", str(spec_file), "--random", "-o", str(out), "--dynamic", "B"]) == 0
    model = onnx.load(str(out))
    assert dims(model.graph.input[0]) == ["B", 8]
    assert main(["export", str(spec_file), "--random", "-o", str(out), "--dynamic", "B,Q"]) == 2
    err = capsys.readouterr().err
    assert "--dynamic Q" in err and "B, T" in err and "Traceback" not in err


def test_gan_generator_and_run_checkpoint_with_labels(tmp_path, capsys):
    spec_file = tmp_path / "gan.yaml"
    spec_file.write_text(GAN)
    spec = builder.load(spec_file)
    gen = builder.build(spec, network="generator")
    torch.nn.init.constant_(gen.get_submodule("out").bias, 0.5)
    run = tmp_path / "run"
    run.mkdir()
    disc = builder.build(spec, network="discriminator")  # the trainer's layout: one state_dict per network
    torch.save({"epoch": 3, "networks": {"generator": gen.state_dict(), "discriminator": disc.state_dict()},
                "class_labels": ["a", "b", "c", "d"]}, run / "best.pt")
    out = tmp_path / "gen.onnx"
    assert main(["export", str(spec_file), "--network", "generator", "--run", str(run), "-o", str(out)]) == 0
    model = onnx.load(str(out))
    m = meta(model)
    assert m["builder.network"] == "generator" and json.loads(m["builder.class_labels"]) == ["a", "b", "c", "d"]
    z = np.random.default_rng(0).standard_normal((7, 2)).astype(np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"z": z})[0]
    with torch.inference_mode():
        np.testing.assert_allclose(got, gen(torch.from_numpy(z)).numpy(), rtol=1e-4, atol=1e-5)
    # several networks and no --network: one clear line, exit 2
    assert main(["export", str(spec_file), "--random", "-o", str(tmp_path / "x.onnx")]) == 2
    assert "--network" in capsys.readouterr().err


def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    spec = str(ROOT / "specs" / "mlp_digits.yaml")
    cases = [
        (["export", spec, "--run", str(tmp_path / "nope"), "-o", str(out)], "no such folder"),
        (["export", spec, "--weights", str(tmp_path / "w.pt"), "-o", str(out)], "no such weights file"),
        (["export", spec, "--random", "-o", str(tmp_path / "missing" / "m.onnx")], "does not exist"),
    ]
    torch.save({"model": {"fc1.weight": torch.zeros(3, 3)}}, tmp_path / "bad.pt")
    cases.append((["export", spec, "--weights", str(tmp_path / "bad.pt"), "-o", str(out)], "do not fit"))
    for argv, words in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


class _Net(torch.nn.Module):
    build_info = builder.BuildInfo("hand-made", "model", (builder.TensorSpec("x", ("B", "T", 4)),), ("y",), {})

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)


class Diverges(_Net):
    """Computes something else while exported: the ONNX file cannot match torch."""

    def forward(self, x):
        y = self.lin(x)
        return y + 1e-3 if torch.compiler.is_exporting() else y


class Narrows(_Net):
    """A shape-dependent branch: torch.export keeps only the branch of the example (T > 4)."""

    def forward(self, x):
        if x.shape[1] > 4:
            x = x[:, :4]
        return self.lin(x)


def test_a_file_that_differs_from_torch_is_not_kept(tmp_path):
    with pytest.raises(VerificationError) as err:
        export_onnx(Diverges(), tmp_path / "d.onnx")
    text = str(err.value)
    assert "output 'y'" in text and "max abs diff 0.001" in text and "B=" in text
    assert not (tmp_path / "d.onnx").exists() and not leftovers(tmp_path, "d.onnx")


def test_a_dim_narrowed_by_a_branch_is_refused(tmp_path):
    with pytest.raises(ExportError, match=r"dim 1 \('T'\) was narrowed to \[5, inf\]"):
        export_onnx(Narrows(), tmp_path / "n.onnx")
    assert list(tmp_path.iterdir()) == []


GPT = """
spec: 1
name: tiny-gpt
inputs:
  tokens: {shape: [B, T], dtype: int64}
nodes:
  wte: {op: Embedding, num_embeddings: 20, embedding_dim: 16}
  wpe: {op: learned_pe, max_len: 32}
  qkv: {op: Linear, out_features: 48}
  split: {op: chunk, in: qkv, chunks: 3, dim: 2, names: [q, k, v]}
  attn: {op: attention, in: {q: split.q, k: split.k, v: split.v}, heads: 2, causal: true}
  res: {op: add, in: [attn, wpe]}
  head: {op: Linear, out_features: 20, bias: false}
outputs: [head]
"""

BERT = """
spec: 1
name: tiny-bert
inputs:
  tokens: {shape: [B, T], dtype: int64}
  mask: {shape: [B, T], dtype: int64}
  pad: {shape: [B, T], dtype: bool}
nodes:
  emb: {op: Embedding, in: tokens, num_embeddings: 20, embedding_dim: 16}
  pe: {op: sinusoidal_pe, max_len: 64}
  attn: {op: attention, in: {q: pe, k: pe, v: pe, mask: mask}, heads: 2}
  ln: {op: LayerNorm}
  mha: {op: MultiheadAttention, in: {query: ln, key_padding_mask: pad}, num_heads: 2}
  head: {op: Linear, in: mha, out_features: 3}
outputs: [head]
"""


def test_causal_and_padding_masked_attention(tmp_path):
    rng = np.random.default_rng(0)
    for text in (GPT, BERT):
        spec = builder.load(text)
        module = builder.build(spec)
        result = export_onnx(module, tmp_path / "a.onnx", spec=spec)
        assert result.dynamic == ["B", "T"]
        sess = ort.InferenceSession(str(tmp_path / "a.onnx"), providers=["CPUExecutionProvider"])
        assert [i.shape for i in sess.get_inputs()] == [["B", "T"]] * len(module.build_info.inputs)
        # a longer sequence than any verified, with padding in the second row (1 = token for `mask`,
        # True = padding for MultiheadAttention's key_padding_mask)
        b, t = 2, 17
        feed = {"tokens": rng.integers(0, 20, (b, t))}
        if text is BERT:
            keep = np.ones((b, t), np.int64)
            keep[1, 9:] = 0
            feed["mask"], feed["pad"] = keep, keep == 0
        got = sess.run(None, feed)[0]
        with torch.inference_mode():
            want = module(*[torch.from_numpy(v) for v in feed.values()])
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-5)


def test_weights_over_the_limit_go_to_one_data_file_beside(tmp_path, monkeypatch):
    import export.onnx_export as ox
    monkeypatch.setattr(ox, "TWO_GB", 0)  # pretend the weights exceed protobuf's 2 GB limit
    spec = builder.load(ROOT / "specs" / "mlp_digits.yaml", hidden=8)
    result = export_onnx(builder.build(spec), tmp_path / "big.onnx", spec=spec, opset=18)
    assert result.external_data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    sess = ort.InferenceSession(str(tmp_path / "big.onnx"), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"x": np.zeros((2, 64), np.float32)})[0].shape == (2, 10)
    assert onnx.load(str(tmp_path / "big.onnx")).opset_import[0].version == 18


def test_export_section_of_the_spec(tmp_path, capsys):
    spec_file = tmp_path / "cfg.yaml"
    spec_file.write_text("""
spec: 1
name: cfg
inputs:
  tokens: {shape: [B, T], dtype: int64}
nodes:
  emb: {op: Embedding, num_embeddings: 12, embedding_dim: 8}
  head: {op: Linear, out_features: 3}
outputs: [head]
export: {dynamic: [B], sizes: {T: 16}, opset: 18}
""")
    out = tmp_path / "c.onnx"
    assert main(["export", str(spec_file), "--random", "-o", str(out)]) == 0
    model = onnx.load(str(out))
    assert dims(model.graph.input[0]) == ["B", 16] and model.opset_import[0].version == 18
    assert main(["export", str(spec_file), "--random", "-o", str(out), "--set", "export.dynamc=[T]"]) == 2
    assert "did you mean 'dynamic'" in capsys.readouterr().err
