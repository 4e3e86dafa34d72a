"""Language-model windows never cross splits (issue 20 item 2).

`source: text` cuts the text by position into contiguous train, val, test ranges first and windows each
range on its own. The property is checked on a text whose every character is distinct, so a character's id
is its position: no val or test window may share a position with a training window, for random seq_len,
stride (also < seq_len, the overlapping case) and split fractions.
"""
from __future__ import annotations

import json
import random

import pytest
import torch

from builder.core.errors import UserError
from builder.data import load_data
from builder.data.dataset import split_rows
from builder.data.tokenizer import train_bpe

N = 900
DISTINCT = "".join(chr(0x4E00 + i) for i in range(N))  # sorted, so the id of a character is its position


def positions(ds) -> set:
    x, y = ds.fields
    return set(x.reshape(-1).tolist()) | set(y.reshape(-1).tolist())


def test_no_val_or_test_window_shares_a_position_with_a_training_window(tmp_path):
    path = tmp_path / "distinct.txt"
    path.write_text(DISTINCT, encoding="utf-8")
    rng = random.Random(0)
    for case in range(60):
        seq_len = rng.randint(2, 40)
        stride = rng.randint(1, seq_len + 5)
        val, test = rng.uniform(0.05, 0.3), rng.choice([0.0, rng.uniform(0.05, 0.3)])
        split = [1 - val - test, val] + ([test] if test else [])
        cfg = {"source": "text", "path": str(path), "seq_len": seq_len, "stride": stride, "split": split,
               "seed": case}
        d = load_data(cfg)
        what = f"case {case}: {cfg}"
        x, y = d.train.fields
        assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y - x, torch.ones_like(x)), what  # consecutive
        train = positions(d.train)
        held = [positions(s) for s in (d.val, d.test) if s is not None]
        assert len(held) == len(split) - 1, what
        for h in held:
            assert h and not (train & h), what
        if len(held) == 2:
            assert not held[0] & held[1], what
        # each split is windowed with the stride from the start of its range, none lost at the front
        for ds, r in zip((d.train, d.val, d.test), split_rows(N, split, 0, shuffle=False)):
            starts, lo, hi = ds.fields[0][:, 0], r[0], r[-1] + 1  # the split's range of positions
            assert hi - (starts[-1].item() + seq_len + 1) < stride, what  # none lost at the end either
            assert starts[0].item() == lo and (torch.diff(starts) == stride).all(), what
            assert lo <= min(positions(ds)) and max(positions(ds)) < hi, what
        assert max(train) < min(min(h) for h in held), what  # train is the front of the text
        assert load_data(cfg).train.fields[0].equal(x), what  # deterministic (a resumed run sees the same)


def test_a_split_too_short_for_one_window_is_one_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(DISTINCT[:200], encoding="utf-8")
    with pytest.raises(UserError, match="the val part of .* has 10 tokens, fewer than seq_len \\+ 1 = 33"):
        load_data({"source": "text", "path": str(path), "seq_len": 32, "split": [0.9, 0.05, 0.05]})


def test_the_bpe_tokenizer_is_trained_on_the_training_range_only(tmp_path):
    rng = random.Random(1)
    words = ["alpha", "beta", "gamma", "delta"]
    train_text = " ".join(rng.choice(words) for _ in range(400))
    held_text = " zyxwvut" * 150  # a word only the held-out end of the text has: BPE would merge it
    path = tmp_path / "bpe.txt"
    path.write_text(train_text + held_text, encoding="utf-8")
    frac = len(train_text) / len(train_text + held_text)
    cfg = {"source": "text", "path": str(path), "seq_len": 8, "split": [frac, 1 - frac],
           "tokenizer": {"type": "bpe", "vocab_size": 300}}
    d = load_data(cfg)
    vocab = json.loads(d.info["tokenizer"])["model"]["vocab"]
    assert not any("zyx" in tok for tok in vocab)  # nothing learnt from the held-out part
    cut = int(frac * len(train_text + held_text))  # what split_rows gives train, char by char
    assert d.info["tokenizer"] == train_bpe((train_text + held_text)[:cut], cfg["tokenizer"]).state()["tokenizer"]
    assert len(d.val) > 0
