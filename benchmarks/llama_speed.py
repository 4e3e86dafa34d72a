"""LLaMA speed: specs/llama.yaml against Hugging Face's LlamaForCausalLM on the same weights, in one run.

    .venv/bin/python benchmarks/llama_speed.py [--rounds 7] [--threads 1] [--batch 4] [--seq 128] [--new 64]

A 4-layer, 256-wide LLaMA (8 heads, 2 key/value heads, MLP 688, vocab 8192, random weights, seed 0) is built
with transformers (sdpa attention), loaded into the spec through specs/llama.hf-map.yaml (logits compared
first), then timed side by side: each round runs every measurement of both models once, alternating which
goes first.

    forward      logits of [batch, seq] tokens, no gradients
    train step   forward, cross-entropy over the logits, backward, AdamW step (each model its own optimizer)
    generate     greedy, cached: the spec's builder.generate against HF's generate(use_cache=True), new tokens
                 from a 16-token prompt; tokens/s, and the tokens must be identical

Medians over the rounds; the ratio is spec time / HF time (target <= 1.0 for each).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIG = dict(vocab=8192, d_model=256, layers=4, heads=8, kv_heads=2, ffn=688, theta=10000.0, eps=1e-5)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--new", type=int, default=64)
    args = ap.parse_args(argv)

    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    import builder

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=CONFIG["vocab"], hidden_size=CONFIG["d_model"], intermediate_size=CONFIG["ffn"],
                         num_hidden_layers=CONFIG["layers"], num_attention_heads=CONFIG["heads"],
                         num_key_value_heads=CONFIG["kv_heads"], rope_theta=CONFIG["theta"],
                         rms_norm_eps=CONFIG["eps"], max_position_embeddings=1024, bos_token_id=0, eos_token_id=0,
                         pad_token_id=0, attn_implementation="sdpa")
    hf = LlamaForCausalLM(config)
    ours = builder.build(ROOT / "specs/llama.yaml", **CONFIG)
    builder.load_weights(ours, hf.state_dict(), ROOT / "specs/llama.hf-map.yaml")
    hf.eval(), ours.eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, CONFIG["vocab"], (args.batch, args.seq), generator=g)
    targets = torch.randint(0, CONFIG["vocab"], (args.batch, args.seq), generator=g)
    prompt = ids[:, :16]
    with torch.no_grad():
        parity = (hf(ids).logits - ours(ids)).abs().max().item()
    opt = {"spec": torch.optim.AdamW(ours.parameters(), lr=1e-6), "HF": torch.optim.AdamW(hf.parameters(), lr=1e-6)}

    def logits(name, x):
        return ours(x) if name == "spec" else hf(x).logits

    def forward(name):
        with torch.inference_mode():
            logits(name, ids)

    def train_step(name):
        model = ours if name == "spec" else hf
        model.train()
        loss = torch.nn.functional.cross_entropy(logits(name, ids).flatten(0, 1), targets.flatten())
        opt[name].zero_grad(set_to_none=True)
        loss.backward()
        opt[name].step()
        model.eval()

    def generate(name):
        if name == "spec":
            return builder.generate(ours, prompt, args.new)
        with torch.inference_mode():
            return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args.new,
                               do_sample=False, use_cache=True, pad_token_id=0, eos_token_id=None)

    same_tokens = torch.equal(generate("spec"), generate("HF"))   # also a warm-up
    for name in ("spec", "HF"):
        forward(name), train_step(name)
    load_before = os.getloadavg()[0]
    tasks = {"forward": forward, "train step": train_step, "generate": generate}
    times = {(task, name): [] for task in tasks for name in ("spec", "HF")}
    for r in range(args.rounds):
        order = ("spec", "HF") if r % 2 == 0 else ("HF", "spec")
        for task, fn in tasks.items():
            for name in order:
                t0 = time.perf_counter()
                fn(name)
                times[(task, name)].append(time.perf_counter() - t0)
    print(f"LLaMA {CONFIG['layers']} layers, d_model {CONFIG['d_model']}, {CONFIG['heads']} heads / "
          f"{CONFIG['kv_heads']} kv heads, MLP {CONFIG['ffn']}, vocab {CONFIG['vocab']}; batch {args.batch}, "
          f"seq {args.seq}, {args.new} new tokens; {args.threads} thread(s), {args.rounds} rounds; torch "
          f"{torch.__version__}, transformers {transformers.__version__}, {platform.machine()}")
    print(f"logits max |spec - HF| {parity:.2e}; greedy tokens identical: {'yes' if same_tokens else 'NO'}")
    ok = same_tokens and parity <= 1e-4
    for task in tasks:
        spec_t, hf_t = (statistics.median(times[(task, n)]) for n in ("spec", "HF"))
        ratio = spec_t / hf_t
        extra = ""
        if task == "generate":
            n = args.batch * args.new
            extra = f"   ({n / spec_t:8.1f} vs {n / hf_t:8.1f} tokens/s)"
        print(f"  {task:11s} spec {spec_t * 1e3:9.2f} ms   HF {hf_t * 1e3:9.2f} ms   ratio {ratio:.2f}x{extra}")
        ok &= ratio <= 1.0
    print(f"targets (identical tokens, each ratio <= 1.0x): {'met' if ok else 'NOT met'}; load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
