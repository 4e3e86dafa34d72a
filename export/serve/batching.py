"""Concurrent requests run as one batch: a small queue in front of the model.

A request waits at most `max_delay` seconds for others; requests whose inputs agree in every dim but the
first (and in dtype) are concatenated along it, up to `max_batch` rows, run once on one worker thread
(the event loop keeps accepting requests meanwhile) and split back. A model without a dynamic batch dim
runs each request alone. When a batch fails, its requests are run one by one, so one bad request fails
alone. `executions` and `inferences` count model runs and requests (Triton's statistics report both).
"""
from __future__ import annotations

import asyncio
import collections
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np


class Batcher:
    def __init__(self, run: Callable[[dict], list], max_batch: int = 32, max_delay: float = 0.002,
                 batched: bool = True):
        self.run, self.max_batch, self.max_delay, self.batched = run, max(1, int(max_batch)), max_delay, batched
        self.queue: asyncio.Queue | None = None
        self.waiting: collections.deque = collections.deque()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.worker: asyncio.Task | None = None
        self.executions = self.inferences = self.rows = 0
        self.largest = 0

    async def submit(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The model's outputs for `feed` (arrays with a batch dim), run alone or with others."""
        if self.worker is None:
            self.queue = asyncio.Queue()
            self.worker = asyncio.get_running_loop().create_task(self._serve())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((feed, future))
        return await future

    def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _key(feed):
        return tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(feed.items()))

    async def _next(self):
        return self.waiting.popleft() if self.waiting else await self.queue.get()

    async def _serve(self):
        loop = asyncio.get_running_loop()
        while True:
            group = [await self._next()]
            rows = _rows(group[0][0])
            if self.batched:
                key, deadline, passed = self._key(group[0][0]), loop.time() + self.max_delay, []
                while rows < self.max_batch:
                    remaining = deadline - loop.time()
                    try:
                        item = self.queue.get_nowait() if remaining <= 0 else \
                            await asyncio.wait_for(self.queue.get(), remaining)
                    except (asyncio.TimeoutError, asyncio.QueueEmpty):
                        break
                    if self._key(item[0]) == key and rows + _rows(item[0]) <= self.max_batch:
                        group.append(item)
                        rows += _rows(item[0])
                    else:
                        passed.append(item)
                self.waiting.extend(passed)
            group = [(feed, fut) for feed, fut in group if not fut.cancelled()]
            if group:
                await self._execute(loop, group, rows)

    async def _execute(self, loop, group, rows):
        feeds = [feed for feed, _ in group]
        try:
            joined = feeds[0] if len(feeds) == 1 else {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
            outputs = await loop.run_in_executor(self.executor, self.run, joined)
            if len(group) > 1 and any(len(o) != rows for o in outputs):
                raise ValueError("an output does not follow the batch dim")
        except Exception as e:
            if len(group) == 1:
                _settle(group[0][1], error=e)
                self._count(1, rows)
                return
            for feed, fut in group:  # find the request that broke the batch; the others still get answers
                await self._execute(loop, [(feed, fut)], _rows(feed))
            return
        self._count(len(group), rows)
        start = 0
        for feed, fut in group:
            n = _rows(feed)
            _settle(fut, result=[o[start:start + n] if len(group) > 1 else o for o in outputs])
            start += n

    def _count(self, requests: int, rows: int):
        self.executions += 1
        self.inferences += requests
        self.rows += rows
        self.largest = max(self.largest, rows)


def _rows(feed: dict) -> int:
    return len(next(iter(feed.values())))


def _settle(future, result=None, error=None):
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
