"""`builder.generate`: a language model writes, one token per step, greedy or sampled.

    ids = builder.generate(model, prompt_ids, max_new_tokens=100, temperature=0.8, top_k=40, seed=0)

The loop is the same for every model; what differs is how one step is computed (a `Decoder`):
- `CachedDecoder`: the prefill and decode modules the compiler derives (kv_cache.py): the prompt runs once,
  then each step feeds one token and the keys/values (or recurrent state) of the past;
- `FullDecoder`: the whole context again at every step (`use_cache=False`, or a network that cannot be
  cached; a `NoCacheWarning` says which node prevents it);
- export/generate_onnx.py's `OnnxDecoder`: the exported prefill.onnx / decode.onnx in onnxruntime.
The context is cropped to the positions the model has (its position table's `max_len`): past that, every
step recomputes the last `max_len` tokens, as the model was trained to see them.
"""
from __future__ import annotations

import warnings
import weakref

import torch

from builder.generation import kv_cache
from builder.core.errors import UserError
from builder.core.types import build_info


class NoCacheWarning(UserWarning):
    """The network has no key/value cache: generation recomputes the whole context at every step."""


class FullDecoder:
    """Every step runs the model on the whole (cropped) context and keeps the last position's logits."""

    def __init__(self, model, context):
        self.model, self.context = model, context

    def start(self, ids):
        return _first(self.model(_crop(ids, self.context)))[:, -1]

    def step(self, ids, new):
        return self.start(ids)


class CachedDecoder:
    """The prompt through `prefill`, then one token at a time through `decode` with the cache."""

    def __init__(self, prefill, decode, context):
        self.prefill, self.decode, self.context = prefill, decode, context
        self.cache, self.length = None, 0

    def start(self, ids):
        ids = _crop(ids, self.context)
        logits, *self.cache = self.prefill(ids)
        self.length = ids.shape[1]
        return logits[:, -1]

    def step(self, ids, new):
        if self.context is not None and self.length >= self.context:  # the window slides: recompute it
            return self.start(ids)
        logits, *self.cache = self.decode(new, *self.cache)
        self.length += 1
        return logits[:, -1]


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _crop(ids, context):
    return ids if context is None or ids.shape[1] <= context else ids[:, -context:]


_DERIVED = weakref.WeakKeyDictionary()  # model -> (plan, prefill, decode), derived once per model


def network_of(model):
    """The checked Network a module was compiled from (its build_info), or a one-line error."""
    info = build_info(model)
    net = info.network if info is not None else None
    if net is None:
        raise UserError("generate: the model carries no spec graph (pass what builder.build returns)")
    return net


def decoder_for(model, use_cache: bool = True):
    """The Decoder of a built language model; warns (NoCacheWarning) when a cache was asked for and the
    network cannot have one."""
    net = network_of(model)
    if kv_cache.token_input(net) is None:
        raise UserError(f"generate: {net.name} is not a language model (it must take one [B, T] tensor of "
                        f"integer token ids; it takes {', '.join(i.name + str(list(i.shape)) for i in net.inputs)})")
    context = kv_cache.context_of(net)
    if not use_cache:
        return FullDecoder(model, context)
    if model not in _DERIVED:
        plan = kv_cache.plan(net)
        derived = (kv_cache.derive(model, plan, False), kv_cache.derive(model, plan, True)) if plan.ok else None
        _DERIVED[model] = (plan, derived)
    plan, derived = _DERIVED[model]
    if derived is None:
        warnings.warn(f"no key/value cache for {net.name}: {plan.reason}; recomputing the whole context at "
                      "every step", NoCacheWarning, stacklevel=3)
        return FullDecoder(model, context)
    return CachedDecoder(*derived, context)


def generate(model, ids, max_new_tokens, temperature=0.0, top_k=None, top_p=None, seed=None,
             use_cache=True) -> torch.LongTensor:
    """`ids` [B, T] followed by `max_new_tokens` generated tokens: [B, T + max_new_tokens].

    `temperature=0` is greedy (argmax); otherwise logits / temperature are sampled, keeping the `top_k`
    likeliest tokens and/or the smallest set whose probability reaches `top_p`. `seed` fixes the sampling."""
    check_request(ids, max_new_tokens, temperature, top_k, top_p)
    was_training = model.training
    model.eval()
    try:
        decoder = decoder_for(model, use_cache)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        new = [t.cpu() for t in sample(decoder, ids.to(device), max_new_tokens, temperature, top_k, top_p, seed)]
        return torch.cat([ids.cpu().long(), *new], dim=1)
    finally:
        model.train(was_training)


def sample(decoder, ids, max_new_tokens, temperature=0.0, top_k=None, top_p=None, seed=None, vocab_size=None):
    """Yield the new tokens [B, 1], one step at a time (the loop `generate` and `build generate` share).

    `vocab_size`: only ids below it are chosen (a model whose output is wider than its tokenizer, e.g.
    `char_lstm`'s 128 logits over a text of 57 characters)."""
    check_request(ids, max_new_tokens, temperature, top_k, top_p)
    generator = None
    if seed is not None and temperature > 0:
        generator = torch.Generator(device=ids.device if isinstance(ids, torch.Tensor) else "cpu")
        generator.manual_seed(int(seed))
    if max_new_tokens == 0:
        return
    with torch.inference_mode():  # entered per step: the caller runs between the yields
        logits = decoder.start(ids)
    for i in range(max_new_tokens):
        new = pick(torch.as_tensor(logits)[:, :vocab_size], temperature, top_k, top_p, generator)
        yield new
        if i + 1 < max_new_tokens:
            with torch.inference_mode():
                ids = torch.cat([ids, new.to(ids.device)], dim=1)
                logits = decoder.step(ids, new.to(ids.device))


def pick(logits, temperature=0.0, top_k=None, top_p=None, generator=None):
    """The next token [B, 1] from the last position's logits [B, V]."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        ordered, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= top_p  # keep the likeliest tokens until top_p is reached
        logits = logits.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)


def check_request(ids, max_new_tokens, temperature, top_k, top_p) -> None:
    if getattr(ids, "ndim", None) != 2 or ids.shape[1] < 1 or ids.dtype not in (torch.int64, torch.int32):
        raise UserError(f"generate: ids must be a [B, T] integer tensor with T >= 1, got "
                        f"{getattr(ids, 'dtype', type(ids).__name__)} {list(getattr(ids, 'shape', []))}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise UserError(f"generate: max_new_tokens must be a whole number >= 0, got {max_new_tokens!r}")
    if not temperature >= 0:
        raise UserError(f"generate: temperature must be >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise UserError(f"generate: top_k must be a whole number >= 1, got {top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise UserError(f"generate: top_p must be in (0, 1], got {top_p!r}")
