"""The ops of a derived prefill/decode module that read or extend a cache (see kv_cache.py).

Each wraps the compiled module of its spec node (same parameters, nothing copied). Called with the node's
own inputs it is the prefill: the node's output plus the keys and values it computed. Called with past keys
and values after them it is the decode step: the new positions attend to the past ones and to themselves.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from builder.ops.rotary import RotaryEmbedding


def split_heads(x, heads: int):
    """[B, T, D] -> [B, heads, T, D / heads]: the layout the cache keeps (new positions append on axis 2)."""
    b, t, d = x.shape
    return x.reshape(b, t, heads, d // heads).transpose(1, 2)


def attend(q, k, v, heads: int, scale=None):
    """Multi-head attention of t new queries [B, t, D] over s >= t cached keys/values [B, heads, s, d], the
    new positions being the last t of the s: query i sees keys 0 .. s - t + i (causal, offset by the past)."""
    b, t, _ = q.shape
    s = k.shape[2]
    mask = None
    if t > 1:
        mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t)
    out = F.scaled_dot_product_attention(split_heads(q, heads), k, v, attn_mask=mask, scale=scale)
    return out.transpose(1, 2).reshape(b, t, v.shape[1] * v.shape[3])


class CachedAttention(nn.Module):
    """The `attention` op (no projections): its keys and values, split into kv_heads heads and rotated when
    the op has `rope:`, are what the cache keeps; a decode step's positions start at the past length."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.slots = inner.slots

    def forward(self, *xs):
        n = len(self.slots)
        named = dict(zip(self.slots, xs[:n]))
        q = named.get("q", xs[0])
        k = named.get("k", q)
        v = named.get("v", k)
        if len(xs) == n:
            q, k, v = self.inner.heads_of(q, k, v)
            return self.inner.attend(q, k, v), k, v
        past_k, past_v = xs[n], xs[n + 1]
        past = past_k.shape[2]
        q, k, v = self.inner.heads_of(q, k, v, past)
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        return self.inner.attend(q, k, v, past=past), k, v


class CachedSelfAttention(nn.Module):
    """`MultiheadAttention` as self-attention: the projected keys and values are what the cache keeps."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def _projections(self, x):
        attn = self.inner.attn
        return F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)

    def forward(self, x, past_k=None, past_v=None):
        q, k, v = self._projections(x)
        h = self.inner.attn.num_heads
        if past_k is None:
            return self.inner(x), split_heads(k, h), split_heads(v, h)
        k = torch.cat([past_k, split_heads(k, h)], dim=2)
        v = torch.cat([past_v, split_heads(v, h)], dim=2)
        return self.inner.attn.out_proj(attend(q, k, v, h)), k, v


class OffsetPositions(nn.Module):
    """`learned_pe` / `sinusoidal_pe` / `rope` for positions past_len .. past_len + t - 1."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, past_len):
        if isinstance(self.inner, RotaryEmbedding):
            return self.inner(x, past_len)
        t = x.shape[1]
        if hasattr(self.inner, "table"):  # sinusoidal: fixed table, optional input scale
            scale = self.inner.scale
            x = x * scale if scale != 1.0 else x
            return x + self.inner.table[past_len:past_len + t].unsqueeze(0)
        return x + self.inner.weight[past_len:past_len + t].unsqueeze(0)
