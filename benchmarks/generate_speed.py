"""Generation speed: the spec's GPT-2-style model with and without its derived key/value cache in torch, the
exported decoder in onnxruntime, and Hugging Face's `GPT2LMHeadModel.generate` on the same weights.

    .venv/bin/python benchmarks/generate_speed.py [--rounds 5] [--threads 1] [--new 128] [--prompt 32]

A 4-layer, 256-wide, 4-head GPT-2 with a vocabulary of 8192 (random weights, seed 0) is built with
transformers, loaded into specs/gpt2.yaml through specs/gpt2.hf-map.yaml, and exported with
`build export --generate`'s function. Greedy decoding, batch 1 and 8, a prompt of 32 random tokens, 128
new tokens. Each round runs every engine once (the order rotates); tokens/s is the median over the rounds
of batch * new tokens / wall seconds. Greedy tokens of every engine are compared with Hugging Face's.
Targets: tokens identical; the spec's cached torch loop at least as fast as Hugging Face; onnxruntime
faster than both at batch 1.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIG = dict(d_model=256, layers=4, heads=4, vocab=8192, ctx=256)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="threads for torch and onnxruntime (default 1)")
    ap.add_argument("--new", type=int, default=128, help="new tokens per run")
    ap.add_argument("--prompt", type=int, default=32, help="prompt length")
    ap.add_argument("--batches", default="1,8")
    args = ap.parse_args(argv)

    import onnxruntime
    import torch
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    import builder
    from builder.generation.loop import sample
    from export.generate_onnx import OnnxDecoder, export_generation

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=CONFIG["vocab"], n_positions=CONFIG["ctx"], n_embd=CONFIG["d_model"],
                                    n_layer=CONFIG["layers"], n_head=CONFIG["heads"], bos_token_id=0,
                                    eos_token_id=0)).eval()
    ours = builder.build(ROOT / "specs/gpt2.yaml", **CONFIG)
    builder.load_weights(ours, hf.state_dict(), ROOT / "specs/gpt2.hf-map.yaml")
    ours.eval()
    tmp = tempfile.mkdtemp(prefix="generate_speed.")
    export_generation(ours, Path(tmp) / "gpt", spec=builder.load(ROOT / "specs/gpt2.yaml", **CONFIG))
    ort_decoder = OnnxDecoder(Path(tmp) / "gpt", threads=args.threads)

    def run_hf(ids):
        with torch.inference_mode():
            return hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new, do_sample=False,
                               use_cache=True, pad_token_id=0, eos_token_id=None)

    def run_ort(ids):
        return torch.cat([ids, *sample(ort_decoder, ids, args.new)], dim=1)

    engines = {
        "spec, torch, cached": lambda ids: builder.generate(ours, ids, args.new),
        "spec, torch, no cache": lambda ids: builder.generate(ours, ids, args.new, use_cache=False),
        "spec, onnxruntime": run_ort,
        "HF generate (cache)": run_hf,
    }
    load_before = os.getloadavg()[0]
    print(f"GPT-2 style, {CONFIG['layers']} layers, d_model {CONFIG['d_model']}, {CONFIG['heads']} heads, "
          f"vocab {CONFIG['vocab']}; prompt {args.prompt}, {args.new} new tokens, greedy; {args.threads} thread(s); "
          f"torch {torch.__version__}, transformers {transformers.__version__}, onnxruntime "
          f"{onnxruntime.__version__}, {platform.machine()}, load average {load_before:.1f}")
    ok = True
    for b in [int(x) for x in args.batches.split(",")]:
        ids = torch.randint(0, CONFIG["vocab"], (b, args.prompt), generator=torch.Generator().manual_seed(b))
        reference = run_hf(ids)
        same = {name: bool(torch.equal(fn(ids), reference)) for name, fn in engines.items()}  # also a warm-up
        times = {name: [] for name in engines}
        names = list(engines)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                t0 = time.perf_counter()
                engines[name](ids)
                times[name].append(time.perf_counter() - t0)
        rate = {name: b * args.new / statistics.median(t) for name, t in times.items()}
        print(f"\nbatch {b}:")
        for name in names:
            print(f"  {name:24s} {rate[name]:9.1f} tokens/s   greedy tokens = HF: {'yes' if same[name] else 'NO'}")
        cached, hf_rate, ort = rate["spec, torch, cached"], rate["HF generate (cache)"], rate["spec, onnxruntime"]
        print(f"  spec cached / HF {cached / hf_rate:.2f}x   onnxruntime / HF {ort / hf_rate:.2f}x   "
              f"onnxruntime / spec cached {ort / cached:.2f}x   cached / no cache "
              f"{cached / rate['spec, torch, no cache']:.2f}x")
        met = all(same.values()) and cached >= hf_rate and (b != 1 or ort > max(cached, hf_rate))
        ok &= met
        print(f"  targets (tokens identical; cached >= HF{'; onnxruntime > both' if b == 1 else ''}): "
              f"{'met' if met else 'NOT met'}")
    print(f"\nload average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
