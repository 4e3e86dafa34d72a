"""One data split and how it is batched: rows gathered by shuffled index, never one sample at a time.

A split holds aligned fields (inputs first, then the target). In-memory fields are torch tensors and a
batch is `field[idx]` for a whole index tensor at once. Streamed fields are numpy memmaps plus the rows
that belong to the split; a batch reads only its rows from disk and runs `prepare` on them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

COMMON_KEYS = {
    "source", "split", "files", "batch_size", "eval_batch_size", "shuffle", "seed", "drop_last",
    "standardize", "standardize_target", "transform", "stream", "split_shuffle", "window",
}


@dataclass
class Data:
    """The three splits (val and test may be None) and what the source reported about itself."""
    train: "Dataset"
    val: "Dataset | None"
    test: "Dataset | None"
    info: dict = field(default_factory=dict)


class Dataset:
    """Aligned fields of one split; `fields[:n_inputs]` feed the model, the field after them is the target."""

    def __init__(self, fields, n_inputs, rows=None, prepare=None):
        self.fields = list(fields)
        self.n_inputs = n_inputs
        self.rows = rows            # streamed only: rows of the memmaps that belong to this split
        self.prepare = prepare      # streamed only: numpy rows -> list of tensors, run per batch
        self.sample_shapes = [None] * len(self.fields)
        self.device = torch.device("cpu")
        self.pick = None            # streamed only: which prepared fields are the inputs, in the network's order

    @property
    def streamed(self) -> bool:
        return self.rows is not None

    def __len__(self) -> int:
        return len(self.rows) if self.streamed else len(self.fields[0])

    @property
    def has_target(self) -> bool:
        return len(self.fields) > self.n_inputs

    def select_inputs(self, pick) -> None:
        """Keep the input fields `pick` (indices), in that order, then the target: the network's inputs by name."""
        keep = list(pick) + list(range(self.n_inputs, len(self.fields)))
        if self.streamed:
            self.pick = [keep[i] if self.pick is None else self.pick[keep[i]] for i in range(len(keep))]
        else:
            self.fields = [self.fields[i] for i in keep]
        self.sample_shapes = [self.sample_shapes[i] for i in keep]
        self.n_inputs = len(pick)

    def reshape_inputs(self, shapes) -> None:
        """View input i as per-sample shape `shapes[i]` (same element count), e.g. 64 pixels as 1x8x8."""
        for i, shape in enumerate(shapes):
            if shape is None:
                continue
            if self.streamed:
                self.sample_shapes[i] = tuple(shape)
            else:
                self.fields[i] = self.fields[i].reshape(len(self.fields[i]), *shape)

    def order(self, shuffle: bool, seed: int, epoch: int, rank: int = 0, world: int = 1,
              even: bool = True) -> torch.Tensor:
        """The epoch's sample order: a permutation fixed by (seed, epoch), so a resumed run replays it.

        With several processes every rank draws the same permutation and takes every world-th sample, cut
        to the same length on all ranks (unless `even` is False) so that their batches (and DDP's
        all-reduces) line up."""
        n = len(self)
        if shuffle:
            g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if world > 1:
            order = order[rank::world][: n // world] if even else order[rank::world]
        return order

    def to(self, device) -> None:
        """Move in-memory fields to `device` once, so that batches are gathered there."""
        if not self.streamed:
            self.fields = [f.to(device) for f in self.fields]
        self.device = torch.device(device)

    def batches(self, batch_size: int, order: torch.Tensor, drop_last: bool = False):
        """Yield tuples of tensors, one per field, `batch_size` rows at a time in `order`."""
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if drop_last and len(idx) < batch_size:
                return
            yield self._gather(idx)

    def _gather(self, idx: torch.Tensor):
        if not self.streamed:
            if self.fields[0].device != idx.device:
                idx = idx.to(self.fields[0].device)
            return tuple(f[idx] for f in self.fields)
        rows = self.rows[idx.cpu().numpy()]
        ahead = np.argsort(rows, kind="stable")  # read the memmap front to back, then restore the order
        back = np.empty_like(ahead)
        back[ahead] = np.arange(len(ahead))
        tensors = self.prepare([np.asarray(f[rows[ahead]])[back] for f in self.fields])
        if self.pick is not None:
            tensors = [tensors[i] for i in self.pick]
        return tuple((t if s is None else t.reshape(len(t), *s)).to(self.device, non_blocking=True)
                     for t, s in zip(tensors, self.sample_shapes))

    def sample(self, n: int = 1):
        """The first n rows of every field (for shape checks and examples)."""
        return self._gather(torch.arange(min(n, len(self))))


def split_rows(n: int, fractions, seed: int, shuffle: bool = True):
    """Row indices for each split: fractions of n (train first), shuffled with `seed` unless told not to."""
    fractions = [float(f) for f in fractions]
    if not 1 <= len(fractions) <= 3 or any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-6:
        raise ValueError(f"split must be 1 to 3 non-negative fractions summing to at most 1, got {fractions}")
    if shuffle:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).numpy()
    else:
        perm = np.arange(n)
    sizes = [int(f * n) for f in fractions[1:]]
    if abs(sum(fractions) - 1) < 1e-6:
        sizes = [n - sum(sizes)] + sizes          # train takes what rounding leaves
    else:
        sizes = [int(fractions[0] * n)] + sizes
    bounds = np.cumsum([0] + sizes)
    return [perm[bounds[i]:bounds[i + 1]] for i in range(len(sizes))]
