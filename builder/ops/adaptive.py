"""Adaptive average pooling that stays exact for every input size in an exported graph.

torch.onnx turns nn.AdaptiveAvgPool2d((7, 7)) into an AveragePool whose kernel and stride come from
the example size: the file is then wrong at every other size. While exporting, these modules pool
with two small averaging matrices instead (row i averages input positions floor(i*n/k) to
ceil((i+1)*n/k) - 1, torch's own windows), built from the input's symbolic size; eager runs call
torch's kernel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def averaging_matrix(n, k: int, like: torch.Tensor) -> torch.Tensor:
    """[k, n]: row i holds 1/len over torch's adaptive window i of an input of length n."""
    i = torch.arange(k, device=like.device)
    start = (i * n) // k
    end = ((i + 1) * n + k - 1) // k
    j = torch.arange(n, device=like.device)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]


class AdaptiveAvgPool(nn.Module):
    """nn.AdaptiveAvgPool1d/2d (same arguments and results) with an export-exact form."""

    def __init__(self, output_size, nd: int):
        super().__init__()
        self.output_size, self.nd = output_size, nd
        self.sizes = tuple(output_size) if isinstance(output_size, (list, tuple)) else (output_size,) * nd

    def forward(self, x):
        if not torch.compiler.is_exporting() or all(s in (None, 1) for s in self.sizes):
            pool = F.adaptive_avg_pool1d if self.nd == 1 else F.adaptive_avg_pool2d
            return pool(x, self.output_size)
        for axis, k in zip(range(-self.nd, 0), self.sizes):
            if k is None:
                continue
            m = averaging_matrix(x.shape[axis], k, x)
            x = torch.movedim(torch.matmul(torch.movedim(x, axis, -1), m.T), -1, axis)
        return x

    def extra_repr(self):
        return f"output_size={self.output_size}"
