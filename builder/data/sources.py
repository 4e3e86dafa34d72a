"""Built-in data sources: the notes' toy data generated from a seed, and scikit-learn's real digits.

Each source returns `(fields, n_inputs, info)`: numpy arrays with one row per sample (inputs first, then
the target, if any) and a dict of facts the trainer or user may want (classes, vocabulary, ...).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

DATA_FILES = Path(__file__).resolve().parent / "builtin"
DEFAULT_CORPUS = DATA_FILES / "corpus.txt"


def _gen(seed):
    return torch.Generator().manual_seed(int(seed))


def toy_linear(seed=0, n=1000, weights=(3.0, 4.0), bias=0.0, noise=3.0, low=5.0, high=15.0):
    """The notes' regression toy: y = 3*x1 + 4*x2 + noise, x ~ U(5, 15), noise ~ N(0, 3)."""
    g = _gen(seed)
    w = torch.tensor(weights, dtype=torch.float32)
    x = torch.rand(n, len(w), generator=g) * (high - low) + low
    y = x @ w + bias + torch.randn(n, generator=g) * noise
    return [x.numpy(), y.reshape(n, 1).numpy()], 1, {"true_weights": list(map(float, w)), "true_bias": bias}


def xor(seed=0, n=400, noise=0.0, target="class"):
    """The four XOR corners, repeated n/4 times (optionally jittered); label = x1 xor x2."""
    g = _gen(seed)
    corners = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    x = corners.repeat(math.ceil(n / 4), 1)[:n]
    y = (x[:, 0] != x[:, 1]).long()
    x = x + torch.randn(x.shape, generator=g) * noise
    y = y.float().reshape(-1, 1) if target == "float" else y
    return [x.numpy(), y.numpy()], 1, {"num_classes": 2}


def sine(seed=0, n=1000, tau=4, noise=0.2, step=0.01):
    """The notes' noisy sine x_t = sin(0.01 t) + N(0, 0.2): windows of tau values predict the next one."""
    g = _gen(seed)
    t = torch.arange(1, n + 1, dtype=torch.float32)
    x = torch.sin(step * t) + torch.randn(n, generator=g) * noise
    windows = torch.stack([x[i:n - tau + i] for i in range(tau)], dim=1)
    return [windows.numpy(), x[tau:].reshape(-1, 1).numpy()], 1, {"tau": tau}


def tril(seed=0, n=1000, size=4, low=1.0, high=5.0):
    """The notes' GAN data: lower-triangular size x size matrices with U(1, 5) entries, flattened."""
    g = _gen(seed)
    m = torch.tril(torch.rand(n, size, size, generator=g) * (high - low) + low)
    return [m.reshape(n, size * size).numpy()], 1, {"mean": m.mean(0).reshape(-1).tolist()}


def digits(seed=0):
    """scikit-learn's 1,797 real 8x8 handwritten digits (values 0..16), shipped with the library."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images.astype(np.float32).reshape(-1, 1, 8, 8)
    return [images, d.target.astype(np.int64)], 1, {"num_classes": 10}


def text(seed=0, path=None, seq_len=32, stride=None, encoding="utf-8", tokenizer=None, split=None):
    """Token windows of a UTF-8 text: input ids[i:i+T], target ids[i+1:i+T+1] (the next token).

    With `split` fractions (the trainer passes `train.data.split`), the text is first cut by position into
    contiguous train, val, test ranges (in that order) and each range is windowed on its own, so no window of
    one split shares a token with a window of another even when `stride` < `seq_len`; `info["split_rows"]`
    says which windows belong to which split. Tokens are characters (ids in sorted character order of the
    whole text, `info["vocab"]`), or with `tokenizer: {type: bpe, vocab_size: N}` byte-level BPE tokens of a
    tokenizer trained on the training range only (`info["tokenizer"]` is its JSON)."""
    from builder.core.errors import UserError

    path = Path(path) if path else DEFAULT_CORPUS
    try:
        chars = path.read_text(encoding=encoding)
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"text data: cannot read {path}: {e}") from None
    pieces = text_ranges(chars, split)
    if tokenizer:
        from builder.data.tokenizer import train_bpe
        bpe = train_bpe(pieces[0] or chars[:1], tokenizer)
        encoded = [np.asarray(bpe.encode(p), dtype=np.int64) for p in pieces]
        info = {"tokenizer": bpe.state()["tokenizer"], "vocab_size": bpe.size}
    else:
        vocab = sorted(set(chars))
        lookup = {c: i for i, c in enumerate(vocab)}
        encoded = [np.fromiter((lookup[c] for c in p), dtype=np.int64, count=len(p)) for p in pieces]
        info = {"vocab": vocab, "vocab_size": len(vocab)}
    stride = int(stride or seq_len)
    xs, ys, rows, first = [], [], [], 0
    names = ("train", "val", "test")
    for k, ids in enumerate(encoded):
        starts = np.arange(0, len(ids) - seq_len, stride)  # a window reads seq_len + 1 tokens (x, then y)
        if len(starts) == 0 and (k == 0 or len(pieces[k])):
            where = f"the {names[k]} part of {path}" if split is not None else str(path)
            raise UserError(f"text data: {where} has {len(ids)} tokens, fewer than seq_len + 1 = {seq_len + 1}"
                            + (" (give it a larger split fraction or a shorter seq_len)" if split is not None else ""))
        window = np.arange(seq_len)
        xs.append(ids[starts[:, None] + window])
        ys.append(ids[starts[:, None] + window + 1])
        rows.append(np.arange(first, first + len(starts)))
        first += len(starts)
    info = {**info, "path": str(path)}
    if split is not None:
        info["split_rows"] = rows
    return [np.concatenate(xs), np.concatenate(ys)], 1, info


def text_ranges(chars: str, split) -> list[str]:
    """The text cut by position into contiguous train, val, test parts, sized as `split_rows` sizes rows
    (train takes what rounding leaves when the fractions sum to 1); the whole text without `split`."""
    if split is None:
        return [chars]
    from builder.data.dataset import split_rows
    return [chars[r[0]:r[0] + len(r)] if len(r) else "" for r in split_rows(len(chars), split, 0, shuffle=False)]


BUILTIN = {"toy_linear": toy_linear, "xor": xor, "sine": sine, "tril": tril, "digits": digits, "text": text}


def unigram_perplexity(tokens: np.ndarray, vocab_size: int) -> float:
    """exp(entropy) of the token frequencies: the perplexity of a model that ignores all context."""
    counts = np.bincount(np.asarray(tokens).reshape(-1), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(np.exp(-(p * np.log(p)).sum()))
