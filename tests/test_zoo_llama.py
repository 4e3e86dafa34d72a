"""specs/llama.yaml against Hugging Face's LlamaForCausalLM (transformers is a test dependency only): a small
config with random weights (nothing downloaded) loaded through specs/llama.hf-map.yaml gives the same logits,
the same greedy tokens as its `generate` with a cache, a verified ONNX prefill/decode pair, and trains; the
defaults are TinyLlama-1.1B's exact parameter count."""
import json
from pathlib import Path

import pytest
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

import builder
from builder.data import load_data
from builder.generation import kv_cache
from builder.weights.loader import convert_state_dict

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
TOL = 1e-5
transformers.logging.set_verbosity_error()

SMALL = dict(vocab=97, d_model=32, layers=2, heads=4, kv_heads=2, ffn=64, theta=500000.0, eps=1e-6)


def hf_config(**kw):
    return LlamaConfig(vocab_size=SMALL["vocab"], hidden_size=SMALL["d_model"], intermediate_size=SMALL["ffn"],
                       num_hidden_layers=SMALL["layers"], num_attention_heads=SMALL["heads"],
                       num_key_value_heads=SMALL["kv_heads"], rope_theta=SMALL["theta"], rms_norm_eps=SMALL["eps"],
                       max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=0,
                       attn_implementation="sdpa", **kw)


@pytest.fixture(scope="module")
def llama_pair():
    torch.manual_seed(0)
    ref = LlamaForCausalLM(hf_config()).eval()
    with torch.no_grad():  # gains that are not all ones, so RMSNorm's weight is really tested
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    ours = builder.build(SPECS / "llama.yaml", **SMALL)
    builder.load_weights(ours, ref.state_dict(), SPECS / "llama.hf-map.yaml")
    return ref, ours.eval()


@pytest.mark.parametrize("batch,T", [(2, 7), (3, 40)])
def test_llama_logits_match_transformers(llama_pair, batch, T):
    ref, ours = llama_pair
    ids = torch.randint(0, SMALL["vocab"], (batch, T), generator=torch.Generator().manual_seed(T))
    with torch.no_grad():
        assert (ref(ids).logits - ours(ids)).abs().max().item() <= TOL


def test_greedy_tokens_equal_transformers_generate_with_cache(llama_pair):
    ref, ours = llama_pair
    plan = kv_cache.plan(ours.build_info.network)
    assert plan.ok and [e.name for e in plan.entries][:2] == ["layers.0.self_attn.sdpa.key",
                                                             "layers.0.self_attn.sdpa.value"]
    ids = torch.randint(0, SMALL["vocab"], (2, 5), generator=torch.Generator().manual_seed(1))
    theirs = ref.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False,
                          use_cache=True, pad_token_id=0, eos_token_id=None)
    cached = builder.generate(ours, ids, 20)
    assert torch.equal(cached, theirs)
    assert torch.equal(builder.generate(ours, ids, 20, use_cache=False), theirs)
    # every decode step's logits equal a full forward's (the cache keeps [B, kv_heads, P, head_dim])
    prefill, decode = kv_cache.derive(ours, plan, False), kv_cache.derive(ours, plan, True)
    with torch.no_grad():
        full = ours(cached)
        logits, *cache = prefill(cached[:, :5])
        assert cache[0].shape == (2, SMALL["kv_heads"], 5, SMALL["d_model"] // SMALL["heads"])
        worst = (logits[:, 0] - full[:, 4]).abs().max().item()
        for t in range(5, cached.shape[1]):
            logits, *cache = decode(cached[:, t:t + 1], *cache)
            worst = max(worst, (logits[:, 0] - full[:, t]).abs().max().item())
    assert worst <= TOL


def test_onnx_prefill_and_decode_give_torchs_tokens(llama_pair, tmp_path):
    from builder.generation.loop import sample
    from export.generate_onnx import OnnxDecoder, export_generation
    ref, _ = llama_pair
    ours = builder.build(SPECS / "llama.yaml", **{**SMALL, "layers": 1})   # one layer: the export is the slow part
    builder.load_weights(ours, {k: v for k, v in ref.state_dict().items() if ".layers.1." not in k},
                         SPECS / "llama.hf-map.yaml").eval()
    manifest = export_generation(ours, tmp_path / "llama")
    assert manifest["context"] is None and manifest["max_abs_diff"] <= TOL
    assert [c["name"] for c in manifest["cache"]] == ["layers.0.self_attn.sdpa.key", "layers.0.self_attn.sdpa.value"]
    ids = torch.randint(0, SMALL["vocab"], (2, 4), generator=torch.Generator().manual_seed(6))
    onnx_ids = torch.cat([ids, *sample(OnnxDecoder(tmp_path / "llama"), ids, 12)], dim=1)
    assert torch.equal(onnx_ids, builder.generate(ours, ids, 12))


def test_tinyllama_parameter_count_and_full_size_map():
    """The defaults are TinyLlama-1.1B (vocab 32000, hidden 2048, 22 layers, 32 heads, 4 kv heads, MLP 5632):
    1,100,048,384 parameters, as LlamaForCausalLM counts them (meta device: shapes only)."""
    config = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                         num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048)
    with torch.device("meta"):
        ref = LlamaForCausalLM(config)
        ours = builder.build(SPECS / "llama.yaml", device="meta")
    assert sum(p.numel() for p in ref.parameters()) == 1_100_048_384
    assert builder.load(SPECS / "llama.yaml").total_params == 1_100_048_384
    legacy = {**ref.state_dict(), "model.layers.0.self_attn.rotary_emb.inv_freq": torch.empty(32, device="meta")}
    converted = convert_state_dict(legacy, SPECS / "llama.hf-map.yaml", ours)
    assert set(converted) == set(ours.state_dict())


def test_llama_trains_a_few_steps(tmp_path):
    """A few hundred steps on the built-in text: held-out perplexity falls below the unigram perplexity (it
    learned more than character frequencies)."""
    spec = builder.load(SPECS / "llama.yaml", **{**SMALL, "vocab": 128})
    module, history, run_dir = builder.train(spec, run_dir=tmp_path, quiet=True, epochs=4,
                                             **{"data.seq_len": 32, "data.batch_size": 32,
                                                "schedule.warmup_steps": 2, "optimizer.lr": 3e-3})
    unigram = load_data(spec.train["data"]).info["unigram_perplexity"]
    test = json.loads((run_dir / "test.json").read_text())
    assert history[-1]["val.perplexity"] < history[0]["val.perplexity"]
    assert test["perplexity"] < 0.9 * unigram, (test, unigram)
