"""The batching queue of `build serve`: concurrent requests share model runs up to the limit, each gets its
own rows back, mismatched shapes run apart, and one failing request fails alone."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from export.serve.batching import Batcher


class Model:
    """y = 2x + the batch's row count, so a test sees which rows ran together; fails on a negative input."""

    def __init__(self):
        self.batches = []

    def __call__(self, feed):
        x = feed["x"]
        self.batches.append(len(x))
        if (x < 0).any():
            raise ValueError("negative input")
        return [2 * x, np.full((len(x), 1), len(x))]


async def _many(batcher, feeds):
    return await asyncio.gather(*(batcher.submit(f) for f in feeds), return_exceptions=True)


def run(batcher, feeds):
    try:
        return asyncio.run(_many(batcher, feeds))
    finally:
        batcher.close()


def test_concurrent_requests_share_runs_up_to_the_limit_and_get_their_own_rows():
    model = Model()
    feeds = [{"x": np.full((2, 3), float(i), np.float32)} for i in range(10)]
    answers = run(Batcher(model, max_batch=8, max_delay=0.5), feeds)
    for i, (y, n) in enumerate(answers):
        np.testing.assert_array_equal(y, np.full((2, 3), 2.0 * i))
    assert sum(model.batches) == 20 and max(model.batches) <= 8 and len(model.batches) < 10
    assert model.batches[0] == 8  # four 2-row requests filled the first batch


def test_requests_of_other_shapes_run_apart():
    model = Model()
    feeds = [{"x": np.ones((1, 3), np.float32)}, {"x": np.ones((1, 4), np.float32)}, {"x": np.ones((1, 3), np.float32)}]
    answers = run(Batcher(model, max_batch=8, max_delay=0.2), feeds)
    assert [a[0].shape for a in answers] == [(1, 3), (1, 4), (1, 3)]
    assert sorted(model.batches) == [1, 2]


def test_one_failing_request_fails_alone():
    model = Model()
    feeds = [{"x": np.ones((1, 2), np.float32)}, {"x": -np.ones((1, 2), np.float32)}, {"x": np.ones((1, 2), np.float32)}]
    answers = run(Batcher(model, max_batch=8, max_delay=0.2), feeds)
    assert isinstance(answers[1], ValueError)
    np.testing.assert_array_equal(answers[0][0], [[2.0, 2.0]])
    np.testing.assert_array_equal(answers[2][0], [[2.0, 2.0]])
    assert answers[0][1][0, 0] == 1  # rerun alone after the shared batch failed


def test_an_unbatched_model_runs_each_request_alone():
    model = Model()
    run(Batcher(model, max_batch=8, max_delay=0.2, batched=False), [{"x": np.ones((1, 2), np.float32)}] * 3)
    assert model.batches == [1, 1, 1]


@pytest.mark.parametrize("max_batch", [1, 3])
def test_the_limit_holds(max_batch):
    model = Model()
    run(Batcher(model, max_batch=max_batch, max_delay=0.2), [{"x": np.ones((1, 2), np.float32)}] * 7)
    assert max(model.batches) <= max_batch and sum(model.batches) == 7
