"""Built-in data sources, splits and the preparation (standardise, resize) of `train.data`."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from builder.data import load_data, split_rows
from builder.data.sources import DEFAULT_CORPUS, unigram_perplexity
from builder.core.errors import UserError


def test_toy_linear_is_the_notes_regression_data():
    d = load_data({"source": "toy_linear", "n": 2000, "split": [1.0]})
    x, y = d.train.fields
    assert x.shape == (2000, 2) and y.shape == (2000, 1)
    assert 5 <= x.min() and x.max() <= 15
    noise = y[:, 0] - x @ torch.tensor([3.0, 4.0])
    assert abs(noise.mean()) < 0.3 and 2.7 < noise.std() < 3.3
    # least squares on the data recovers the true weights
    w = torch.linalg.lstsq(x.double(), y.double()).solution.reshape(-1)
    assert torch.allclose(w, torch.tensor([3.0, 4.0], dtype=torch.float64), atol=0.05)


def test_xor_labels_are_exclusive_or():
    d = load_data({"source": "xor", "n": 40, "split": [1.0]})
    x, y = d.train.fields
    assert torch.equal(y, (x[:, 0] != x[:, 1]).long())
    d = load_data({"source": "xor", "n": 40, "split": [1.0], "target": "float"})
    assert d.train.fields[1].shape == (40, 1) and d.train.fields[1].dtype == torch.float32


def test_sine_windows_predict_the_next_value():
    d = load_data({"source": "sine", "n": 100, "tau": 4, "noise": 0.0, "split": [1.0], "split_shuffle": False})
    x, y = d.train.fields
    assert x.shape == (96, 4) and y.shape == (96, 1)
    t = torch.arange(1, 101, dtype=torch.float32)
    assert torch.allclose(x[0], torch.sin(0.01 * t[:4]))
    assert torch.allclose(y[0, 0], torch.sin(0.01 * t[4]))
    assert torch.equal(x[1, :3], x[0, 1:])  # windows slide by one step


def test_tril_matrices_are_lower_triangular_uniform_1_5():
    d = load_data({"source": "tril", "n": 500, "split": [1.0]})
    m = d.train.fields[0].reshape(-1, 4, 4)
    assert torch.equal(m, torch.tril(m))
    lower = m[torch.tril(torch.ones(4, 4, dtype=torch.bool)).expand_as(m)]
    assert 1 <= lower.min() and lower.max() <= 5 and abs(lower.mean() - 3) < 0.1


def test_digits_are_sklearns_1797_images_split_by_fraction():
    d = load_data({"source": "digits", "split": [0.8, 0.1, 0.1], "seed": 0})
    sizes = [len(s) for s in (d.train, d.val, d.test)]
    assert sum(sizes) == 1797 and sizes[1] == sizes[2] == 179
    x, y = d.train.fields
    assert x.shape[1:] == (1, 8, 8) and y.dtype == torch.int64 and set(y.tolist()) == set(range(10))
    # the splits are disjoint and the seed fixes them
    again = load_data({"source": "digits", "split": [0.8, 0.1, 0.1], "seed": 0})
    assert torch.equal(again.test.fields[0], d.test.fields[0])
    other = load_data({"source": "digits", "split": [0.8, 0.1, 0.1], "seed": 1})
    assert not torch.equal(other.test.fields[0], d.test.fields[0])


def test_split_rows_partitions_all_rows():
    parts = split_rows(103, [0.7, 0.2, 0.1], seed=3)
    assert [len(p) for p in parts] == [73, 20, 10]
    assert sorted(np.concatenate(parts).tolist()) == list(range(103))
    with pytest.raises(ValueError):
        split_rows(10, [0.9, 0.2], seed=0)


def test_standardise_uses_training_statistics_only():
    d = load_data({"source": "digits", "seed": 0, "standardize": True})
    train = d.train.fields[0].reshape(len(d.train), -1)
    assert train.mean(0).abs().max() < 1e-4
    varying = train.std(0) > 0
    assert torch.allclose(train.std(0, unbiased=False)[varying], torch.ones(int(varying.sum())), atol=1e-3)
    assert d.test.fields[0].reshape(len(d.test), -1).mean(0).abs().max() > 1e-3  # test is not re-centred


def test_resize_and_normalise_digits_to_28x28():
    d = load_data({"source": "digits", "seed": 0, "transform": {"resize": 28, "normalize": True}})
    x = d.train.fields[0]
    assert x.shape[1:] == (1, 28, 28)
    assert abs(x.mean()) < 1e-4 and abs(x.std() - 1) < 1e-3


def test_text_windows_and_unigram_perplexity():
    d = load_data({"source": "text", "seq_len": 16, "split": [0.9, 0.1]})
    x, y = d.train.fields
    assert x.shape[1] == 16 and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # the target is the input shifted by one character
    assert DEFAULT_CORPUS.stat().st_size > 10_000
    assert 2 < d.info["unigram_perplexity"] < d.info["vocab_size"]
    assert unigram_perplexity(np.array([0, 1, 2, 3]), 4) == pytest.approx(4.0)


def test_batches_cover_every_row_once_in_a_seeded_order():
    d = load_data({"source": "toy_linear", "n": 100, "split": [1.0]})
    order = d.train.order(shuffle=True, seed=0, epoch=0)
    rows = torch.cat([b[0] for b in d.train.batches(32, order)])
    assert rows.shape == (100, 2)
    assert torch.equal(rows[order.argsort()], d.train.fields[0])
    assert torch.equal(order, d.train.order(True, 0, 0)) and not torch.equal(order, d.train.order(True, 0, 1))
    shards = [d.train.order(True, 0, 0, rank=r, world=2) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 50 and not set(shards[0].tolist()) & set(shards[1].tolist())


def test_bad_data_sections_are_one_line_errors():
    with pytest.raises(UserError, match="unknown source 'digit'.*did you mean 'digits'"):
        load_data({"source": "digit"})
    with pytest.raises(UserError, match="takes no key 'nn'"):
        load_data({"source": "toy_linear", "nn": 5})
    with pytest.raises(UserError, match="no such file"):
        load_data({"source": "csv", "path": "nope.csv", "target": "y"})
