"""`build generate SPEC (--run DIR | --weights FILE) (--prompt TEXT | --prompt-ids 1,2,3) --max-new N`:
a language model writes, printed as it goes; `build generate OUT_DIR ...` runs an `export --generate`
folder in onnxruntime."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

from builder.core.errors import UserError
from builder.commands.common import add_weight_args, load_spec


def register(sub):
    p = sub.add_parser("generate", help="make a language model write (torch, or an exported decoder in onnxruntime)")
    p.add_argument("model", metavar="SPEC|DIR", help="a spec YAML (with --run or --weights), or a folder written "
                   "by `build export --generate`")
    add_weight_args(p, random=False, when="with a spec: ")
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", metavar="TEXT", help="the text to continue (encoded with the model's vocabulary)")
    prompt.add_argument("--prompt-ids", metavar="1,2,3", help="the token ids to continue")
    p.add_argument("--max-new", type=int, required=True, metavar="N", help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 (default) = greedy")
    p.add_argument("--top-k", type=int, metavar="K", help="sample among the K likeliest tokens")
    p.add_argument("--top-p", type=float, metavar="P", help="sample among the likeliest tokens up to probability P")
    p.add_argument("--seed", type=int, metavar="S", help="fix the sampling")
    p.add_argument("--ids", action="store_true", help="print token ids instead of text")
    p.add_argument("--tokenizer", metavar="FILE", help="vocab.json or tokenizer.json for weights from elsewhere")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole context at every step")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="with a spec: override a param")
    p.set_defaults(func=run)


def _decoder(args):
    """(Decoder, tokenizer, vocabulary size) for a spec with weights or an exported folder."""
    from export.generate_onnx import OnnxDecoder, is_generation_folder

    from builder.data import tokenizer
    if Path(args.model).is_dir():
        if args.run or args.weights or args.overrides or args.network or args.no_cache:
            raise UserError("--run/--weights/--set/--network/--no-cache go with a spec, not with an exported folder")
        if not is_generation_folder(args.model):
            raise UserError(f"{args.model}: not a folder written by `build export --generate`")
        decoder = OnnxDecoder(args.model)
        tok = tokenizer.from_file(args.tokenizer) if args.tokenizer else tokenizer.in_folder(args.model)
        return decoder, tok, decoder.vocab_size
    if not args.model.lower().endswith((".yaml", ".yml")):
        raise UserError(f"{args.model}: expected a spec .yaml or a folder of `build export --generate`")
    if not (args.run or args.weights):
        raise UserError("generating with a spec needs trained weights: --run DIR or --weights FILE")

    from builder.generation import kv_cache
    from builder.generation.loop import decoder_for
    from builder.weights.sources import trained_network
    spec = load_spec(args, args.model)
    module, checkpoint = trained_network(spec, args.network, run=args.run, weights=args.weights)
    module.eval()
    tok = tokenizer.find(args.tokenizer, args.run, checkpoint)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decoder = decoder_for(module, use_cache=not args.no_cache)
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    return decoder, tok, kv_cache.logits_shape(module.build_info.network)[-1]


def _prompt_ids(args, tok, vocab):
    if args.prompt is not None:
        if tok is None:
            raise UserError("--prompt needs the model's vocabulary: train with `build train` (it saves it), "
                            "pass --tokenizer FILE, or give --prompt-ids")
        ids = tok.encode(args.prompt)
        if not ids:
            raise UserError("--prompt is empty: give at least one character")
        return ids
    try:
        ids = [int(x) for x in args.prompt_ids.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--prompt-ids must be whole numbers separated by commas, got {args.prompt_ids!r}") from None
    limit = tok.size if tok is not None else vocab
    bad = [i for i in ids if not 0 <= i < limit]
    if bad:
        raise UserError(f"--prompt-ids: {', '.join(map(str, bad[:10]))} outside the vocabulary (ids 0..{limit - 1})")
    if not ids:
        raise UserError("--prompt-ids is empty: give at least one id")
    return ids


class _Printer:
    """Prints text as tokens arrive; holds back an unfinished UTF-8 character of a byte-level BPE."""

    def __init__(self, tok, ids, as_ids):
        self.tok, self.ids, self.as_ids, self.shown = tok, list(ids), as_ids, ""
        self.emit(final=False, first=True)

    def add(self, token: int):
        self.ids.append(token)
        self.emit(final=False)

    def emit(self, final, first=False):
        if self.as_ids or self.tok is None:
            text = ",".join(map(str, self.ids)) if first else "," + str(self.ids[-1])
            sys.stdout.write(text if not final else "\n")
        else:
            text = self.tok.decode(self.ids)
            if not final and text.endswith("\ufffd"):
                return
            if text.startswith(self.shown):
                sys.stdout.write(text[len(self.shown):] if not final else text[len(self.shown):] + "\n")
            self.shown = text
        sys.stdout.flush()


def run(args):
    import torch

    from builder.generation.loop import check_request, sample
    decoder, tok, vocab = _decoder(args)
    ids = torch.tensor([_prompt_ids(args, tok, vocab)], dtype=torch.long)
    check_request(ids, args.max_new, args.temperature, args.top_k, args.top_p)
    if tok is None and not args.ids:
        print("note: no vocabulary saved with these weights: printing token ids", file=sys.stderr)
    printer = _Printer(tok, ids[0].tolist(), args.ids)
    for new in sample(decoder, ids, args.max_new, args.temperature, args.top_k, args.top_p, args.seed,
                      vocab_size=tok.size if tok is not None else None):
        printer.add(int(new[0, 0]))
    printer.emit(final=True)
    return 0
