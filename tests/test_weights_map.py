"""`builder.load_weights` / `build convert-weights`: renames, transposes, splits, ties, and errors that
list everything missing, unexpected or mis-shaped at once; torch (weights_only) and safetensors files."""
import os
import pickle
from pathlib import Path

import pytest
import torch

import builder
from builder.commands.cli import main as build_main
from builder.core.errors import UserError
from builder.weights.loader import WeightsError, convert_state_dict, load_weights, read_state_dict, save_state_dict

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"

TWO_LAYER = """
spec: 1
name: two_layer
params: {d: 4}
inputs:
  x: {shape: [B, T, 4]}
blocks:
  layer:
    nodes:
      q: {op: Linear, out_features: ${d}}
      k: {op: Linear, in: x, out_features: ${d}}
      v: {op: Linear, in: x, out_features: ${d}}
      att: {op: attention, in: {q: q, k: k, v: v}, heads: 2}
      proj: {op: Linear, out_features: ${d}}
nodes:
  stage1: {block: layer}
  stage2: {block: layer}
  norm: {op: LayerNorm}
"""


def fused_source(seed=0):
    """A foreign checkpoint: 0-based layers, a fused Conv1D-style qkv [in, 3*out], a projection."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for n in range(2):
        sd[f"blocks.{n}.qkv.weight"] = torch.randn(4, 12, generator=g)
        sd[f"blocks.{n}.qkv.bias"] = torch.randn(12, generator=g)
        sd[f"blocks.{n}.out.weight"] = torch.randn(4, 4, generator=g)
        sd[f"blocks.{n}.out.bias"] = torch.randn(4, generator=g)
        sd[f"blocks.{n}.mask"] = torch.ones(3, 3)  # a buffer the spec does not have
    sd["final_norm.weight"] = torch.randn(4, generator=g)
    sd["final_norm.bias"] = torch.randn(4, generator=g)
    return sd


FUSED_MAP = {
    "rules": [
        {"from": "blocks.{n}.qkv.weight", "transpose": True,
         "split": {"dim": 0, "to": ["stage{n+1}.q.weight", "stage{n+1}.k.weight", "stage{n+1}.v.weight"]}},
        {"from": "blocks.{n}.qkv.bias",
         "split": {"dim": 0, "sizes": [4, 4, 4],
                   "to": ["stage{n+1}.q.bias", "stage{n+1}.k.bias", "stage{n+1}.v.bias"]}},
        {"from": "blocks.{n}.out.weight", "to": "stage{n+1}.proj.weight", "transpose": True},
        {"from": "blocks.{n}.out.{p}", "to": "stage{n+1}.proj.{p}"},
        {"from": "final_{name}.{p}", "to": "{name}.{p}"},
    ],
    "ignore": ["blocks.{n}.mask"],
}


@pytest.fixture(scope="module")
def module():
    return builder.build(builder.load(TWO_LAYER))


def test_rename_shift_transpose_split(module):
    sd = fused_source()
    load_weights(module, sd, FUSED_MAP)
    w = sd["blocks.1.qkv.weight"].t()
    assert torch.equal(module.stage2.q.weight, w[0:4])
    assert torch.equal(module.stage2.k.weight, w[4:8])
    assert torch.equal(module.stage2.v.weight, w[8:12])
    assert torch.equal(module.stage2.v.bias, sd["blocks.1.qkv.bias"][8:12])
    assert torch.equal(module.stage1.proj.weight, sd["blocks.0.out.weight"].t())
    assert torch.equal(module.norm.bias, sd["final_norm.bias"])
    # the fused computation equals the split one: x @ W_qkv + b, split in three
    x = torch.randn(2, 4)
    fused = x @ sd["blocks.0.qkv.weight"] + sd["blocks.0.qkv.bias"]
    assert torch.allclose(fused[:, 4:8], module.stage1.k(x), atol=1e-6)


def test_errors_list_missing_unexpected_and_misshaped_at_once(module):
    sd = fused_source()
    del sd["final_norm.bias"]                                   # -> norm.bias missing
    sd["blocks.0.out.weight"] = torch.randn(4, 5)               # -> mis-shaped after transpose
    sd["extra.thing"] = torch.zeros(1)                          # -> unexpected
    bad_map = {"rules": FUSED_MAP["rules"]}                     # no ignore: the masks are unexpected too
    with pytest.raises(WeightsError) as info:
        load_weights(module, sd, bad_map)
    e = info.value
    assert e.missing == ["norm.bias"]                             # stage1.proj.weight is mis-shaped, not missing
    assert "extra.thing" in e.unexpected and "blocks.0.mask" in e.unexpected and "blocks.1.mask" in e.unexpected
    assert e.mis_shaped == ["blocks.0.out.weight -> stage1.proj.weight: source [5, 4], spec wants [4, 4]"]
    text = str(e)
    for piece in ("missing", "unexpected", "mis-shaped", "norm.bias", "extra.thing", "[5, 4]"):
        assert piece in text
    assert isinstance(e, UserError)   # the CLI prints it and exits 2


def test_a_target_filled_twice_and_a_rule_naming_no_parameter(module):
    sd = fused_source()
    mapping = {"rules": [{"from": "final_norm.{p}", "to": "stage1.proj.{p}"}] + FUSED_MAP["rules"],
               "ignore": ["blocks.{n}.mask"]}
    with pytest.raises(WeightsError) as info:
        load_weights(module, sd, mapping)
    assert any("filled twice" in o for o in info.value.other)
    with pytest.raises(WeightsError) as info:
        load_weights(module, {"final_norm.weight": torch.ones(4)}, {"rules": [{"from": "final_norm.weight",
                                                                               "to": "norm.gamma"}]})
    assert info.value.no_target == ["final_norm.weight -> norm.gamma"] and not info.value.unexpected
    assert "no target" in str(info.value) and "unexpected" not in str(info.value)


def test_identity_map_and_bad_maps(module):
    sd = {k: v.clone() for k, v in module.state_dict().items()}
    load_weights(module, sd)                                      # no map: names already match
    for bad, msg in [({"rules": [{"from": "a", "to": "b", "split": {"to": ["c"]}}]}, "exactly one"),
                     ({"rulez": []}, "unknown key"),
                     ({"rules": [{"from": "a.{x}", "to": "{y}"}]}, "does not capture"),
                     ({"rules": [{"from": "a", "to": "b", "transpose": "yes"}]}, "transpose")]:
        with pytest.raises(UserError, match=msg):
            convert_state_dict({"a.q": torch.zeros(1), "a": torch.zeros(1)}, bad, module)


TIED = """
spec: 1
name: tied
inputs:
  idx: {shape: [B, T], dtype: int64}
nodes:
  wte: {op: Embedding, num_embeddings: 10, embedding_dim: 4}
  head: {op: Linear, out_features: 10, bias: false, tie: {weight: wte.weight}}
"""


def test_tied_parameters():
    m = builder.build(builder.load(TIED))
    w = torch.randn(10, 4)
    load_weights(m, {"wte.weight": w})                            # the tied head counts as filled
    assert torch.equal(m.head.weight, w) and m.head.weight is m.wte.weight
    load_weights(m, {"head.weight": w * 2})                       # either name fills both
    assert torch.equal(m.wte.weight, w * 2)
    load_weights(m, {"wte.weight": w, "head.weight": w.clone()})  # both given and equal: fine
    with pytest.raises(WeightsError, match="tied"):
        load_weights(m, {"wte.weight": w, "head.weight": w + 1})


def test_files_torch_and_safetensors(tmp_path, module):
    from safetensors.torch import save_file
    sd = fused_source()
    torch.save(sd, tmp_path / "w.pt")
    save_file(sd, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "wrapped.pt")
    for name in ("w.pt", "w.safetensors", "wrapped.pt"):
        got = read_state_dict(tmp_path / name)
        assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
        load_weights(module, tmp_path / name, FUSED_MAP)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_torch_files_load_with_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"w": Payload()}, f, protocol=2)
    with pytest.raises(UserError, match="weights_only=True"):
        read_state_dict(path)
    with pytest.raises(UserError, match="no such weights file"):
        read_state_dict(tmp_path / "absent.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="safetensors"):
        read_state_dict(tmp_path / "junk.safetensors")


def test_save_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "out.pt"
    save_state_dict({"a": torch.ones(2)}, out)
    assert torch.equal(torch.load(out, weights_only=True)["a"], torch.ones(2))

    def broken_save(obj, f):
        f.write(b"half a file")
        raise RuntimeError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError):
        save_state_dict({"a": torch.zeros(2)}, out)
    assert torch.equal(torch.load(out, weights_only=True)["a"], torch.ones(2))   # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pt"]             # no temporary left over


# ---- the CLI, on GPT-2 through specs/gpt2.hf-map.yaml ---------------------------------------------

def test_convert_weights_cli_gpt2(tmp_path, capsys):
    from safetensors.torch import save_file
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    ref = GPT2LMHeadModel(GPT2Config(vocab_size=61, n_positions=16, n_embd=16, n_layer=2, n_head=2,
                                     bos_token_id=0, eos_token_id=0)).eval()
    sd = {k: v.contiguous() for k, v in ref.state_dict().items() if k != "lm_head.weight"}  # tied: stored once
    save_file(sd, str(tmp_path / "model.safetensors"))
    sets = ["--set", "vocab=61", "--set", "ctx=16", "--set", "d_model=16", "--set", "layers=2", "--set", "heads=2"]
    out = tmp_path / "gpt2.pt"
    code = build_main(["convert-weights", str(SPECS / "gpt2.yaml"), *sets, "--from",
                       str(tmp_path / "model.safetensors"), "--map", str(SPECS / "gpt2.hf-map.yaml"), "-o", str(out)])
    assert code == 0
    assert "OK gpt2" in capsys.readouterr().out
    ours = builder.build(SPECS / "gpt2.yaml", vocab=61, ctx=16, d_model=16, layers=2, heads=2).eval()
    ours.load_state_dict(torch.load(out, weights_only=True))
    idx = torch.randint(0, 61, (2, 9))
    with torch.no_grad():
        assert (ref(idx).logits - ours(idx)).abs().max().item() <= 1e-5

    # the wrong size: exit 2, every mis-shaped tensor listed, and no output written
    bad_out = tmp_path / "bad.pt"
    code = build_main(["convert-weights", str(SPECS / "gpt2.yaml"), *sets, "--set", "layers=3",
                       "--from", str(tmp_path / "model.safetensors"), "--map", str(SPECS / "gpt2.hf-map.yaml"),
                       "-o", str(bad_out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing" in err and "h.2.attn.q.weight" in err
    assert not bad_out.exists()


def test_torchvision_map_names():
    """specs/resnet.torchvision-map.yaml, on torchvision-style names made from the spec's own keys."""
    ours = builder.build(SPECS / "resnet18.yaml", width=8, classes=10, size=32)
    theirs = {k.replace("downsample_conv", "downsample.0").replace("downsample_bn", "downsample.1"): v.clone()
              for k, v in ours.state_dict().items()}
    assert "layer2.0.downsample.0.weight" in theirs and "layer1.0.conv1.weight" in theirs
    converted = convert_state_dict(theirs, SPECS / "resnet.torchvision-map.yaml", ours)
    assert set(converted) == set(ours.state_dict())


def test_rules_reshape_and_permute_a_tensor_before_it_lands():
    spec = builder.load("""
spec: 1
inputs: {x: {shape: [B, T, 8]}, y: {shape: [B, 8, 6]}}
nodes:
  pos: {op: learned_pe, max_len: 5}
  conv: {op: Conv1d, in: y, out_channels: 3, kernel_size: 2}
""")
    module = builder.build(spec)
    table = torch.randn(1, 5, 8)                 # torchvision ViT's pos_embedding [1, N, D]
    kernel = torch.randn(2, 8, 3)                # a [k, in, out] kernel from another framework
    mapping = {"rules": [{"from": "pos_embedding", "to": "pos.weight", "reshape": [-1, 8]},
                         {"from": "kernel", "to": "conv.weight", "permute": [2, 1, 0]},
                         {"from": "bias", "to": "conv.bias"}]}
    load_weights(module, {"pos_embedding": table, "kernel": kernel, "bias": torch.zeros(3)}, mapping)
    assert torch.equal(module.pos.weight, table[0])
    assert torch.equal(module.conv.weight, kernel.permute(2, 1, 0))
    with pytest.raises(WeightsError) as info:
        load_weights(module, {"pos_embedding": torch.randn(7, 3), "kernel": kernel, "bias": torch.zeros(3)}, mapping)
    assert info.value.other == ["pos_embedding: cannot reshape [7, 3] to [-1, 8]"]
    for bad, msg in [({"from": "a", "to": "b", "reshape": [2, -1, -1]}, "at most one -1"),
                     ({"from": "a", "to": "b", "permute": [0, 0]}, "every dim once"),
                     ({"from": "a", "to": "b", "reshape": "2x3"}, "list of integers")]:
        with pytest.raises(UserError, match=msg):
            load_weights(module, {}, {"rules": [bad]})


REPEATED = """
spec: 1
name: repeated
inputs: {x: {shape: [B, 4]}}
blocks:
  pair:
    nodes:
      fc: {op: Linear, out_features: 4}
      norm: {op: RMSNorm}
nodes:
  stages: {block: pair, repeat: 3}
  token: {op: param, shape: [1, 4]}
  out: {op: add, in: [stages, token]}
"""


def test_copy_index_arithmetic_and_param_nodes_without_weight_suffix():
    """A source that interleaves other layers (torchvision's features.{2s+1}) lands on copy s of a repeated
    block through `{k//2}`; `to: token` fills the param node's tensor, `to: ...norm` an RMSNorm's."""
    module = builder.build(builder.load(REPEATED))
    g = torch.Generator().manual_seed(0)
    source = {"cls": torch.randn(1, 4, generator=g)}
    for s in range(3):
        source[f"features.{2 * s + 1}.fc.weight"] = torch.randn(4, 4, generator=g)
        source[f"features.{2 * s + 1}.fc.bias"] = torch.randn(4, generator=g)
        source[f"features.{2 * s + 1}.gain"] = torch.randn(4, generator=g)
    mapping = {"rules": [{"from": "cls", "to": "token"},
                         {"from": "features.{k}.fc.{p}", "to": "stages.{k//2}.fc.{p}"},
                         {"from": "features.{k}.gain", "to": "stages.{k-1//2}.norm"}]}
    load_weights(module, source, mapping)
    assert torch.equal(module.token.weight, source["cls"])
    assert torch.equal(module.get_submodule("stages.2.fc").weight, source["features.5.fc.weight"])
    assert torch.equal(module.get_submodule("stages.1.norm").weight, source["features.3.gain"])
    with pytest.raises(UserError, match="divides by zero"):
        load_weights(module, source, {"rules": [{"from": "features.{k}.{p*}", "to": "stages.{k//0}.{p}"},
                                                {"from": "cls", "to": "token"}]})
    # a node with more than one tensor is not guessed at: `stages.0.fc` names no parameter
    with pytest.raises(WeightsError, match="no target"):
        load_weights(module, {**source, "extra": torch.zeros(4)},
                     {"rules": [*mapping["rules"], {"from": "extra", "to": "stages.0.fc"}]})
