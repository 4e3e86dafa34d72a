"""ResNet-18/50, BERT and GPT-2 specs against Hugging Face transformers' implementations.

transformers is a test dependency only (the specs never need it). Reference models are small configs
with random init (nothing is downloaded); their state_dicts go through the map files in specs/ exactly
as `build convert-weights` uses them. Eval mode, float32, max |difference| <= 1e-5, two input shapes.
"""
from pathlib import Path

import pytest
import torch
import transformers
from transformers import (BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, ResNetConfig,
                          ResNetForImageClassification)

import builder
from builder.weights.loader import convert_state_dict

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
TOL = 1e-5

transformers.logging.set_verbosity_error()


def max_diff(a, b):
    return (a - b).abs().max().item()


def randomize_batchnorm(model, seed=0):
    """Non-trivial running statistics and affine parameters, so eval-mode batch norm is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
    return model


# ---- ResNet -------------------------------------------------------------------------------------

RESNETS = {
    # spec: (layer_type, depths, hidden_sizes for --set width=8)
    "resnet18": ("basic", [2, 2, 2, 2], [8, 16, 32, 64]),
    "resnet50": ("bottleneck", [3, 4, 6, 3], [32, 64, 128, 256]),
}


@pytest.fixture(scope="module", params=sorted(RESNETS))
def resnet_pair(request):
    name = request.param
    layer_type, depths, hidden = RESNETS[name]
    torch.manual_seed(0)
    config = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=hidden, depths=depths,
                          layer_type=layer_type, num_labels=10)
    ref = randomize_batchnorm(ResNetForImageClassification(config)).eval()
    ours = builder.build(SPECS / f"{name}.yaml", width=8, classes=10, size=32)
    builder.load_weights(ours, ref.state_dict(), SPECS / "resnet.hf-map.yaml")
    return ref, ours.eval()


@pytest.mark.parametrize("batch,size", [(2, 32), (1, 56)])
def test_resnet_matches_transformers(resnet_pair, batch, size):
    ref, ours = resnet_pair
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        assert max_diff(ref(pixel_values=x).logits, ours(x)) <= TOL


def test_resnet_param_count_matches_transformers_at_full_size():
    """The defaults of both specs are the published ResNet-18/50 (checked on the meta device)."""
    for name, (layer_type, depths, _) in RESNETS.items():
        hidden = [64, 128, 256, 512] if layer_type == "basic" else [256, 512, 1024, 2048]
        config = ResNetConfig(embedding_size=64, hidden_sizes=hidden, depths=depths, layer_type=layer_type,
                              num_labels=1000)
        with torch.device("meta"):
            ref = ResNetForImageClassification(config)
            ours = builder.build(SPECS / f"{name}.yaml", device="meta")
        assert sum(p.numel() for p in ref.parameters()) == builder.load(SPECS / f"{name}.yaml").total_params
        converted = convert_state_dict(ref.state_dict(), SPECS / "resnet.hf-map.yaml", ours)
        assert set(converted) == set(ours.state_dict())


# ---- BERT ---------------------------------------------------------------------------------------

BERT_SIZES = {"vocab": 100, "hidden": 32, "layers": 2, "heads": 4, "intermediate": 64, "max_positions": 40}


@pytest.fixture(scope="module")
def bert_pair():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=40, type_vocab_size=2)
    ref = BertModel(config).eval()
    ours = builder.build(SPECS / "bert_base.yaml", **BERT_SIZES)
    builder.load_weights(ours, ref.state_dict(), SPECS / "bert_base.hf-map.yaml")
    return ref, ours.eval()


@pytest.mark.parametrize("batch,T", [(2, 9), (3, 40)])
def test_bert_matches_transformers_with_padding(bert_pair, batch, T):
    ref, ours = bert_pair
    g = torch.Generator().manual_seed(T)
    ids = torch.randint(0, 100, (batch, T), generator=g)
    types = torch.randint(0, 2, (batch, T), generator=g)
    mask = torch.ones(batch, T, dtype=torch.long)
    mask[0, T // 2:] = 0            # padding at the end of the first sequence
    mask[-1, T - 2:] = 0
    with torch.no_grad():
        want = ref(input_ids=ids, token_type_ids=types, attention_mask=mask)
        hidden, pooled = ours(ids, types, mask)
    # padded positions are computed too (from the real tokens); HF and the spec agree everywhere
    assert max_diff(want.last_hidden_state, hidden) <= TOL
    assert max_diff(want.pooler_output, pooled) <= TOL
    # and the mask matters: without it the first sequence's real tokens see the padding
    with torch.no_grad():
        unmasked, _ = ours(ids, types, torch.ones_like(mask))
    assert max_diff(unmasked[0, : T // 2], hidden[0, : T // 2]) > 1e-4


def test_bert_base_param_count_matches_transformers():
    with torch.device("meta"):
        ref = BertModel(BertConfig())
    assert sum(p.numel() for p in ref.parameters()) == 109_482_240
    assert builder.load(SPECS / "bert_base.yaml").total_params == 109_482_240


# ---- GPT-2 --------------------------------------------------------------------------------------

GPT_SIZES = {"vocab": 97, "ctx": 32, "d_model": 32, "layers": 2, "heads": 4}


@pytest.fixture(scope="module")
def gpt2_pair():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=97, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=0,
                        eos_token_id=0)
    ref = GPT2LMHeadModel(config).eval()
    ours = builder.build(SPECS / "gpt2.yaml", **GPT_SIZES)
    builder.load_weights(ours, ref.state_dict(), SPECS / "gpt2.hf-map.yaml")
    return ref, ours.eval()


@pytest.mark.parametrize("batch,T", [(2, 7), (3, 32)])
def test_gpt2_matches_transformers(gpt2_pair, batch, T):
    ref, ours = gpt2_pair
    idx = torch.randint(0, 97, (batch, T), generator=torch.Generator().manual_seed(T))
    with torch.no_grad():
        assert max_diff(ref(idx).logits, ours(idx)) <= TOL


def test_gpt2_head_is_tied_and_attention_is_causal(gpt2_pair):
    _, ours = gpt2_pair
    assert ours.lm_head.weight is ours.wte.weight
    idx = torch.randint(0, 97, (1, 10), generator=torch.Generator().manual_seed(1))
    changed = idx.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % 97
    with torch.no_grad():
        a, b = ours(idx), ours(changed)
    assert max_diff(a[0, :6], b[0, :6]) == 0.0        # the future never leaks into the past
    assert max_diff(a[0, 6:], b[0, 6:]) > 1e-4


def test_gpt2_small_param_count_matches_transformers():
    with torch.device("meta"):
        ref = GPT2LMHeadModel(GPT2Config())
        ours = builder.build(SPECS / "gpt2.yaml", device="meta")
    assert sum(p.numel() for p in ref.parameters()) == 124_439_808
    assert sum(p.numel() for p in ours.parameters()) == 124_439_808
    # the full-size HF state_dict (meta tensors: shapes only) converts through the map, nothing left over
    converted = convert_state_dict(ref.state_dict(), SPECS / "gpt2.hf-map.yaml", ours)
    assert set(converted) == set(ours.state_dict())


def test_bert_base_full_size_map_covers_every_parameter():
    with torch.device("meta"):
        ref = BertModel(BertConfig())
        ours = builder.build(SPECS / "bert_base.yaml", device="meta")
    converted = convert_state_dict(ref.state_dict(), SPECS / "bert_base.hf-map.yaml", ours)
    assert set(converted) == set(ours.state_dict())


def test_bert_map_reads_original_checkpoint_names(bert_pair):
    """`bert.` prefix, LayerNorm.gamma/beta, position_ids buffer and cls.* heads, as in bert-base-uncased."""
    ref, _ = bert_pair
    legacy = {}
    for k, v in ref.state_dict().items():
        if "LayerNorm" in k:
            k = k.replace(".weight", ".gamma").replace(".bias", ".beta")
        legacy[f"bert.{k}"] = v
    legacy["bert.embeddings.position_ids"] = torch.arange(40).unsqueeze(0)
    legacy["cls.predictions.bias"] = torch.zeros(100)
    legacy["cls.seq_relationship.weight"] = torch.zeros(2, 32)
    ours = builder.build(SPECS / "bert_base.yaml", **BERT_SIZES)
    builder.load_weights(ours, legacy, SPECS / "bert_base.hf-map.yaml").eval()
    ids = torch.randint(0, 100, (2, 6))
    with torch.no_grad():
        assert max_diff(ref(input_ids=ids, token_type_ids=torch.zeros_like(ids)).last_hidden_state,
                        ours(ids, torch.zeros_like(ids), torch.ones_like(ids))[0]) <= TOL


def test_gpt2_map_reads_the_hub_layout(gpt2_pair):
    """The published gpt2 checkpoint: GPT2Model keys (no `transformer.`), no lm_head (tied), and the
    causal-mask buffers attn.bias / attn.masked_bias of older files."""
    ref, _ = gpt2_pair
    hub = {k.removeprefix("transformer."): v for k, v in ref.state_dict().items() if k != "lm_head.weight"}
    for n in range(2):
        hub[f"h.{n}.attn.bias"] = torch.tril(torch.ones(32, 32)).view(1, 1, 32, 32)
        hub[f"h.{n}.attn.masked_bias"] = torch.tensor(-1e4)
    ours = builder.build(SPECS / "gpt2.yaml", **GPT_SIZES)
    builder.load_weights(ours, hub, SPECS / "gpt2.hf-map.yaml").eval()
    idx = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert max_diff(ref(idx).logits, ours(idx)) <= TOL
