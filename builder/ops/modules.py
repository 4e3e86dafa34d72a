"""Small nn.Modules for the ops torch has no module for, so every spec node is a named submodule.

Being modules (not bare functions) is what lets the spec path name every op in the fx graph, in
torch.export's module stack, in ONNX node names and in every picture.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from builder.ops.rotary import RotaryEmbedding


class _Arith(nn.Module):
    """Element-wise arithmetic over the inputs, then with the scalar `value` when one is given (a constant
    operand written in the spec: `{op: add, in: x, value: 1.0}`)."""

    def __init__(self, value=None):
        super().__init__()
        self.value = value

    def extra_repr(self):
        return "" if self.value is None else f"value={self.value!r}"


class Add(_Arith):
    def forward(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out if self.value is None else out + self.value


class Mul(_Arith):
    def forward(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out if self.value is None else out * self.value


class Sub(_Arith):
    def forward(self, a, b=None):
        return a - (self.value if b is None else b)


class Div(_Arith):
    def forward(self, a, b=None):
        return a / (self.value if b is None else b)


class MatMul(nn.Module):
    def forward(self, a, b):
        return torch.matmul(a, b)


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor

    def extra_repr(self):
        return f"factor={self.factor}"


class CausalConv1d(nn.Conv1d):
    """nn.Conv1d padded on the left only (dilation * (kernel - 1) zeros), so output step t reads input
    steps <= t (WaveNet, TCNs); same parameters and state_dict names as nn.Conv1d."""

    def forward(self, x):
        left = self.dilation[0] * (self.kernel_size[0] - 1)
        return super().forward(F.pad(x, (left, 0)))


class Concat(nn.Module):
    """torch.cat; `expand` (per input: None or sizes, ("dim", j, d) = dim d of input j) broadcasts size-1 dims."""

    def __init__(self, dim: int = -1, expand=None):
        super().__init__()
        self.dim, self.expand = dim, expand

    def forward(self, *xs):
        if self.expand:
            xs = [x if sizes is None else x.expand([xs[s[1]].shape[s[2]] if isinstance(s, tuple) else s
                                                    for s in sizes]) for x, sizes in zip(xs, self.expand)]
        return torch.cat(xs, dim=self.dim)


class Stack(nn.Module):
    def __init__(self, dim: int = 0):
        super().__init__()
        self.dim = dim

    def forward(self, *xs):
        return torch.stack(xs, dim=self.dim)


class Reshape(nn.Module):
    """`shape` entries: int, -1 (infer), or an index into the input's dims written as `("dim", i)`."""

    def __init__(self, shape):
        super().__init__()
        self.shape = list(shape)

    def forward(self, x):
        return x.reshape([x.shape[d[1]] if isinstance(d, tuple) else d for d in self.shape])


class Permute(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = list(dims)

    def forward(self, x):
        return x.permute(*self.dims)


class Transpose(nn.Module):
    def __init__(self, dim0: int, dim1: int):
        super().__init__()
        self.dim0, self.dim1 = dim0, dim1

    def forward(self, x):
        return x.transpose(self.dim0, self.dim1)


class Split(nn.Module):
    def __init__(self, sections, dim: int = -1):
        super().__init__()
        self.sections, self.dim = list(sections), dim

    def forward(self, x):
        return tuple(torch.split(x, self.sections, dim=self.dim))


class Slice(nn.Module):
    def __init__(self, dim: int, start=None, end=None, step: int = 1):
        super().__init__()
        self.dim, self.start, self.end, self.step = dim, start, end, step

    def forward(self, x):
        index = [slice(None)] * x.dim()
        index[self.dim] = slice(self.start, self.end, self.step)
        return x[tuple(index)]


class Select(nn.Module):
    def __init__(self, dim: int, index: int):
        super().__init__()
        self.dim, self.index = dim, index

    def forward(self, x):
        return x.select(self.dim, self.index)


class Reduce(nn.Module):
    def __init__(self, kind: str, dim=None, keepdim: bool = False):
        super().__init__()
        self.kind, self.dim, self.keepdim = kind, dim, keepdim

    def forward(self, x):
        fn = torch.mean if self.kind == "mean" else torch.sum
        if self.dim is None:
            return fn(x)
        return fn(x, dim=self.dim, keepdim=self.keepdim)


class Unsqueeze(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return x.unsqueeze(self.dim)


class Squeeze(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return x.squeeze(self.dim)


class Recurrent(nn.Module):
    """nn.RNN/LSTM/GRU with named output ports: (output, h) or (output, h, c) for LSTM."""

    def __init__(self, kind: str, order=None, **kwargs):
        super().__init__()
        self.kind, self.order = kind, order  # order: named slots written as {h, x}: x, h to call torch
        self.rnn = getattr(nn, kind)(**kwargs)

    def forward(self, *xs):
        if self.order:
            xs = tuple(xs[i] for i in self.order)
        x, state = xs[0], xs[1:]
        if state:
            init = (state[0], state[1]) if self.kind == "LSTM" else state[0]
            out, hidden = self.rnn(x, init)
        else:
            out, hidden = self.rnn(x)
        if self.kind == "LSTM":
            return out, hidden[0], hidden[1]
        return out, hidden


class MultiheadAttention(nn.Module):
    """nn.MultiheadAttention (batch first) as a graph node: self-attention with one input, or named
    query/key/value with optional key_padding_mask (True or 1 = padding) and causal masking."""

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                 add_zero_attn=False, kdim=None, vdim=None, causal=False, slots=("query",)):
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, dropout=dropout, bias=bias,
                                          add_bias_kv=add_bias_kv, add_zero_attn=add_zero_attn,
                                          kdim=kdim, vdim=vdim, batch_first=True)
        self.causal = causal
        self.slots = tuple(slots)

    def forward(self, *xs):
        named = dict(zip(self.slots, xs))
        q = named.get("query", xs[0])
        k = named.get("key", q)
        v = named.get("value", k)
        pad = named.get("key_padding_mask")
        if pad is not None and pad.dtype != torch.bool:
            pad = pad == 0  # a 0/1 attention mask (1 = keep) becomes torch's "True = ignore"
        mask = None
        if self.causal:
            t = q.shape[1]
            mask = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
        out, _ = self.attn(q, k, v, key_padding_mask=pad, attn_mask=mask, need_weights=False)
        return out


class Attention(nn.Module):
    """Multi-head scaled dot-product attention without projections: [B,T,D] q/k/v -> [B,T,D].

    `mask` (optional input) is a padding mask [B, S] with 1/True = attend, 0/False = padding; `bias` (optional
    input) is added to the attention scores (broadcast to [B, heads, T, S]: a relative-position bias, ALiBi).
    `kv_heads` < heads shares each key/value head among heads / kv_heads query heads (grouped-query; 1 is
    multi-query). `rope` rotates queries and keys per head (builder.ops.rotary) before the scores.
    """

    def __init__(self, heads: int = 1, causal: bool = False, dropout: float = 0.0, scale=None,
                 slots=("q", "k", "v"), kv_heads=None, rope=None, head_dim=None, paired=False):
        super().__init__()
        self.heads, self.causal, self.dropout, self.scale = heads, causal, dropout, scale
        self.kv_heads = kv_heads or heads
        self.paired = paired  # queries and keys have the same positions: one rotary table serves both
        self.slots = tuple(slots)
        self.rope = None
        if rope is not None:
            self.rope = RotaryEmbedding(head_dim, theta=rope.get("theta", 10000.0),
                                        fraction=rope.get("fraction", 1.0), interleaved=rope.get("interleaved", False))

    def heads_of(self, q, k, v, offset=0):
        """q, k, v [B, T, D] -> [B, heads, T, d] (keys and values: kv_heads), rotated when `rope` is set."""
        b, t, d = q.shape
        s = k.shape[1]
        q = q.reshape(b, t, self.heads, d // self.heads)
        k = k.reshape(b, s, self.kv_heads, k.shape[2] // self.kv_heads)
        if self.rope is not None:
            q, k = self.rope.pair(q, k, offset) if self.paired else (self.rope(q, offset), self.rope(k, offset))
        v = v.reshape(b, s, self.kv_heads, v.shape[2] // self.kv_heads)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def attend(self, q, k, v, mask=None, bias=None, past=None):
        """q [B, heads, t, d] over k, v [B, kv_heads, s, d]. In a cached decode step `past` = s - t and the t
        queries are the last t of the s positions, so the causal mask is offset by `past` (one query: none)."""
        t, s = q.shape[2], k.shape[2]
        attn_mask = None
        if mask is not None:
            keep = mask if mask.dtype == torch.bool else mask != 0
            attn_mask = keep[:, None, None, :]
        if self.causal and (attn_mask is not None or bias is not None or (past is not None and t > 1)):
            # a whole sequence: aligned at the top left, as is_causal; a decode step: its t are the last t of s
            causal = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(0 if past is None else s - t)
            attn_mask = causal if attn_mask is None else attn_mask & causal
        if bias is not None:
            bias = bias.to(q.dtype)
            attn_mask = bias if attn_mask is None else torch.where(attn_mask, bias, float("-inf"))
        is_causal = self.causal and attn_mask is None and past is None
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal, scale=self.scale, enable_gqa=self.kv_heads != self.heads)
        b = q.shape[0]
        return out.transpose(1, 2).reshape(b, t, out.shape[1] * out.shape[3])

    def forward(self, *xs):
        named = dict(zip(self.slots, xs))
        q = named.get("q", xs[0])
        k = named.get("k", q)
        v = named.get("v", k)
        q, k, v = self.heads_of(q, k, v)
        return self.attend(q, k, v, named.get("mask"), named.get("bias"))


def sinusoidal_table(max_len: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The notes' formula: P[i, 2j] = sin(i / base^(2j/d)), P[i, 2j+1] = cos(i / base^(2j/d))."""
    pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(base) / dim))
    table = torch.zeros(max_len, dim)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return table


class SinusoidalPE(nn.Module):
    """Adds the fixed sinusoidal table to x [B, T, D] (a buffer, not a parameter, not in state_dict)."""

    def __init__(self, dim: int, max_len: int = 5000, base: float = 10000.0, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.register_buffer("table", sinusoidal_table(max_len, dim, base), persistent=False)

    def forward(self, x):
        t = x.shape[1]
        x = x * self.scale if self.scale != 1.0 else x
        return x + self.table[:t].unsqueeze(0)


class LearnedPositions(nn.Module):
    """Learned position embeddings added to x [B, T, D]: weight [max_len, D] (GPT-2's wpe, BERT's)."""

    def __init__(self, max_len: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_len, dim))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        return x + self.weight[: x.shape[1]].unsqueeze(0)


class RBF(nn.Module):
    """LeNet-5's Euclidean RBF output units: y_i = sum_j (x_j - w_ij)^2 (or its square root)."""

    def __init__(self, in_features: int, out_features: int, squared: bool = True):
        super().__init__()
        self.squared = squared
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.uniform_(self.weight, -1.0, 1.0)

    def forward(self, x):
        d2 = (x.unsqueeze(-2) - self.weight).pow(2).sum(-1)
        return d2 if self.squared else d2.sqrt()
