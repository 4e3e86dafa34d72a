"""builder.generate and the key/value cache the compiler derives (builder/generation/kv_cache.py).

GPT-2 is checked against Hugging Face's `GPT2LMHeadModel.generate` token by token on the same random
weights (a small config built locally, loaded through specs/gpt2.hf-map.yaml); every cached network
against itself without the cache (greedy tokens equal, each decode step's logits within 1e-5 of a full
forward pass over the same tokens).
"""
from pathlib import Path

import pytest
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

import builder
from builder.generation import kv_cache
from builder.core.errors import UserError
from builder.generation.loop import NoCacheWarning

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
TOL = 1e-5
transformers.logging.set_verbosity_error()

GPT = dict(d_model=32, layers=2, heads=2, vocab=97, ctx=24)


@pytest.fixture(scope="module")
def gpt_pair():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=GPT["vocab"], n_positions=GPT["ctx"], n_embd=GPT["d_model"],
                        n_layer=GPT["layers"], n_head=GPT["heads"], bos_token_id=0, eos_token_id=0)
    ref = GPT2LMHeadModel(config).eval()
    ours = builder.build(SPECS / "gpt2.yaml", **GPT)
    builder.load_weights(ours, ref.state_dict(), SPECS / "gpt2.hf-map.yaml")
    return ref, ours.eval()


def decode_errors(model, ids, prompt_len):
    """Max |logits| difference between each cached decode step and a full forward over the same tokens."""
    p = kv_cache.plan(model.build_info.network)
    assert p.ok, p.reason
    prefill, decode = kv_cache.derive(model, p, False), kv_cache.derive(model, p, True)
    with torch.no_grad():
        full = model(ids)
        full = full[0] if isinstance(full, tuple) else full
        logits, *cache = prefill(ids[:, :prompt_len])
        worst = (logits[:, 0] - full[:, prompt_len - 1]).abs().max().item()
        for t in range(prompt_len, ids.shape[1]):
            logits, *cache = decode(ids[:, t:t + 1], *cache)
            worst = max(worst, (logits[:, 0] - full[:, t]).abs().max().item())
    return worst


def test_greedy_gpt2_equals_hugging_face_with_and_without_the_cache(gpt_pair):
    ref, ours = gpt_pair
    ids = torch.randint(0, GPT["vocab"], (2, 5), generator=torch.Generator().manual_seed(1))
    theirs = ref.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=15, do_sample=False,
                          pad_token_id=0, eos_token_id=None)
    cached = builder.generate(ours, ids, 15)
    full = builder.generate(ours, ids, 15, use_cache=False)
    assert cached.dtype == torch.int64 and cached.shape == (2, 20)
    assert torch.equal(cached, theirs) and torch.equal(full, theirs)
    assert decode_errors(ours, cached, 5) <= TOL


def test_the_context_is_cropped_to_the_position_table(gpt_pair):
    _, ours = gpt_pair
    ids = torch.randint(0, GPT["vocab"], (1, 20), generator=torch.Generator().manual_seed(2))
    cached = builder.generate(ours, ids, 12)  # runs 8 positions past ctx=24
    assert cached.shape == (1, 32)
    assert torch.equal(cached, builder.generate(ours, ids, 12, use_cache=False))


@pytest.mark.parametrize("spec,params,entries", [
    ("specs/char_lstm.yaml", {"hidden": 24, "embed": 8, "layers": 2}, ["lstm.h", "lstm.c"]),
    ("examples/char_transformer.yaml", {"d_model": 16, "heads": 2, "ffn": 32},
     ["blocks.0.attn.key", "blocks.0.attn.value", "blocks.1.attn.key", "blocks.1.attn.value"]),
])
def test_recurrent_state_and_multihead_attention_are_cached_exactly(spec, params, entries):
    torch.manual_seed(0)
    model = builder.build(ROOT / spec, **params).eval()
    assert [e.name for e in kv_cache.plan(model.build_info.network).entries] == entries
    ids = torch.randint(0, 128, (3, 4), generator=torch.Generator().manual_seed(3))
    cached = builder.generate(model, ids, 12)
    assert torch.equal(cached, builder.generate(model, ids, 12, use_cache=False))
    assert decode_errors(model, cached, 4) <= TOL


NON_CAUSAL = """
spec: 1
name: bidirectional_lm
inputs: {tokens: {shape: [B, T], dtype: int64}}
nodes:
  embed: {op: Embedding, num_embeddings: 50, embedding_dim: 16}
  attn: {op: MultiheadAttention, num_heads: 2}
  head: {op: Linear, out_features: 50}
"""


def test_a_network_that_cannot_be_cached_falls_back_and_says_why():
    torch.manual_seed(0)
    model = builder.build(builder.load(NON_CAUSAL)).eval()
    assert kv_cache.plan(model.build_info.network).reason.startswith("attn (MultiheadAttention): not causal")
    ids = torch.randint(0, 50, (2, 3), generator=torch.Generator().manual_seed(4))
    with pytest.warns(NoCacheWarning, match="attn .MultiheadAttention.: not causal"):
        cached = builder.generate(model, ids, 6)
    assert torch.equal(cached, builder.generate(model, ids, 6, use_cache=False))


@pytest.mark.parametrize("change,reason", [
    ("  pool: {op: mean, dim: 1, keepdim: true}\n", "pool (mean): acts along the batch or time axis (dim=1)"),
    ("  pool: {op: AvgPool1d, kernel_size: 2}\n", "pool (AvgPool1d): this op may mix time steps"),
])
def test_ops_that_mix_time_steps_are_named(change, reason):
    text = NON_CAUSAL.replace("num_heads: 2}", "num_heads: 2, causal: true}").replace("  head:", change + "  head:")
    assert kv_cache.plan(builder.load(text).network()).reason.startswith(reason)


def test_sampling_is_reproducible_and_filters_apply(gpt_pair):
    _, ours = gpt_pair
    ids = torch.randint(0, GPT["vocab"], (2, 3), generator=torch.Generator().manual_seed(5))
    a = builder.generate(ours, ids, 10, temperature=1.5, seed=7)
    assert torch.equal(a, builder.generate(ours, ids, 10, temperature=1.5, seed=7))
    assert not torch.equal(a, builder.generate(ours, ids, 10, temperature=1.5, seed=8))
    greedy = builder.generate(ours, ids, 10)
    assert torch.equal(builder.generate(ours, ids, 10, temperature=1.0, top_k=1, seed=1), greedy)
    assert torch.equal(builder.generate(ours, ids, 10, temperature=1.0, top_p=1e-6, seed=1), greedy)


def test_requests_that_make_no_sense_are_one_line_errors(gpt_pair):
    _, ours = gpt_pair
    ids = torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(UserError, match="ids must be a .B, T. integer tensor"):
        builder.generate(ours, ids.float(), 3)
    with pytest.raises(UserError, match="top_p must be in"):
        builder.generate(ours, ids, 3, temperature=1.0, top_p=1.5)
    with pytest.raises(UserError, match="not a language model"):
        builder.generate(builder.build(SPECS / "xor_mlp.yaml"), ids, 3)


def test_the_exported_attention_decoder_writes_what_torch_writes(gpt_pair, tmp_path):
    """prefill.onnx/decode.onnx of a 1-layer GPT: verified at export; the onnxruntime loop then gives
    torch's greedy tokens, also past the 24 positions the model has (the window slides)."""
    from builder.generation.loop import sample
    from export.generate_onnx import OnnxDecoder, export_generation
    torch.manual_seed(0)
    small = builder.build(SPECS / "gpt2.yaml", **{**GPT, "layers": 1}).eval()
    manifest = export_generation(small, tmp_path / "gpt")
    assert [c["name"] for c in manifest["cache"]] == ["h.0.attn.sdpa.key", "h.0.attn.sdpa.value"]
    assert manifest["context"] == GPT["ctx"] and manifest["max_abs_diff"] <= TOL
    ids = torch.randint(0, GPT["vocab"], (2, 6), generator=torch.Generator().manual_seed(6))
    onnx_ids = torch.cat([ids, *sample(OnnxDecoder(tmp_path / "gpt"), ids, 22)], dim=1)
    assert torch.equal(onnx_ids, builder.generate(small, ids, 22))


POSITIONS_ONLY = """
spec: 1
name: positions_lm
inputs: {tokens: {shape: [B, T], dtype: int64}}
nodes:
  embed: {op: Embedding, num_embeddings: 30, embedding_dim: 8}
  pos: {op: learned_pe, max_len: 10}
  act: {op: GELU}
  head: {op: Linear, out_features: 30}
"""


def test_a_network_whose_only_memory_is_its_positions_caches_the_past_tokens():
    """No attention and no state: the decode step needs only the past length, read from the past tokens;
    past max_len positions every step re-reads the last max_len tokens."""
    torch.manual_seed(0)
    model = builder.build(builder.load(POSITIONS_ONLY)).eval()
    assert [e.name for e in kv_cache.plan(model.build_info.network).entries] == ["past_tokens"]
    ids = torch.randint(0, 30, (2, 3), generator=torch.Generator().manual_seed(7))
    cached = builder.generate(model, ids, 12)
    assert torch.equal(cached, builder.generate(model, ids, 12, use_cache=False))
    assert decode_errors(model, cached[:, :10], 3) <= TOL


PARTS = """
spec: 1
name: parts_lm
inputs: {tokens: {shape: [B, T], dtype: int64}}
nodes:
  embed: {op: Embedding, num_embeddings: 40, embedding_dim: 16}
  gain: {op: param, shape: [16], init: {type: normal, std: 1.0}}
  scaled: {op: mul, in: [embed, gain]}
  shift: {op: param, shape: [1, 1, 16], init: {type: normal, std: 1.0}}
  wide: {op: expand, in: [shift, embed], shape: [B, T, -1]}
  sum: {op: add, in: [scaled, wide]}
  norm: {op: RMSNorm}
  q: {op: Linear, out_features: 16}
  k: {op: Linear, in: norm, out_features: 8}
  v: {op: Linear, in: norm, out_features: 8}
  qr: {op: rope, in: q, heads: 4, interleaved: true}
  kr: {op: rope, in: k, heads: 2, interleaved: true}
  attn: {op: attention, in: {q: qr, k: kr, v: v}, heads: 4, kv_heads: 2, causal: true, rope: {theta: 100, fraction: 0.5}}
  out: {op: add, in: [sum, attn], value: 0.5}
  head: {op: Linear, out_features: 40}
"""


def test_param_expand_rmsnorm_rope_and_grouped_query_attention_are_cached_exactly():
    """`param` nodes are constants the per-position ops broadcast; `rope` (op and option) continues at the past
    length; grouped-query attention caches kv_heads heads."""
    torch.manual_seed(0)
    model = builder.build(builder.load(PARTS)).eval()
    p = kv_cache.plan(model.build_info.network)
    assert [e.name for e in p.entries] == ["attn.key", "attn.value"] and p.context is None
    assert p.cached == {"qr": "positions", "kr": "positions", "attn": "attention"}
    ids = torch.randint(0, 40, (2, 3), generator=torch.Generator().manual_seed(8))
    cached = builder.generate(model, ids, 14)
    assert torch.equal(cached, builder.generate(model, ids, 14, use_cache=False))
    assert decode_errors(model, cached, 3) <= TOL


@pytest.mark.parametrize("change,reason", [
    ("  bias: {op: alibi, in: norm, heads: 4}\n  attn: {op: attention, in: {q: qr, k: kr, v: v, bias: bias}, "
     "heads: 4, kv_heads: 2, causal: true}\n", "bias (alibi): a table over T read from the tokens"),
    ("  pos: {op: arange, in: norm, end: T, dtype: float32}\n  col: {op: unsqueeze, dim: -1}\n"
     "  attn: {op: add, in: [q, col]}\n",
     "pos (arange): a table over T read from the tokens"),
    ("  hb: {op: param, shape: [4, 1, 1]}\n"
     "  attn: {op: attention, in: {q: qr, k: kr, v: v, bias: hb}, heads: 4, kv_heads: 2, causal: true}\n",
     "attn (attention): an additive bias input"),
    ("  memory: {op: param, shape: [1, 4, 8]}\n"
     "  attn: {op: attention, in: {q: qr, k: memory, v: memory}, heads: 4, kv_heads: 2, causal: true}\n",
     "attn (attention): keys or values that do not come from the tokens"),
])
def test_position_tables_that_restart_at_zero_are_refused(change, reason):
    text = PARTS.replace(PARTS[PARTS.index("  attn:"):PARTS.index("  out:")], change)
    assert kv_cache.plan(builder.load(text).network()).reason.startswith(reason)
