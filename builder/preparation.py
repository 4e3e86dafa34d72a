"""The training data's input standardisation, carried from the trainer to export and predict.

`train.data.standardize` makes the trainer feed (x - mean) / std with the training split's statistics.
Those statistics are saved in every checkpoint (`input_preparation`), and `build export` / `build
predict --run` put the same step at the start of the network, so an exported model takes raw inputs.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class Standardize(nn.Module):
    """(x - mean) / std with fixed training statistics (buffers, so they travel in the state_dict)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float())

    def forward(self, x):
        return (x - self.mean) / self.std


PREFIX = "input_preparation"


def statistics_for(spec_inputs, stats: dict, n_inputs: int) -> dict:
    """{input name: {"mean", "std"}} in the network's sample shape, from the data's {field: (mean, std)}.

    Statistics that cannot be viewed in the network's sample shape (a resize changed it) are left out."""
    out = {}
    for i, spec in enumerate(spec_inputs or []):
        if i >= n_inputs or i not in stats:
            continue
        mean, std = stats[i]
        sample = tuple(spec.shape[1:])
        if mean.numel() == 1:
            out[spec.name] = {"mean": mean.reshape(()), "std": std.reshape(())}
        elif all(isinstance(d, int) for d in sample) and mean.numel() == math.prod(sample):
            out[spec.name] = {"mean": mean.reshape(sample), "std": std.reshape(sample)}
    return out


def include(gm, preparation: dict):
    """Insert each input's standardisation as the first op of the fx graph (submodule
    `input_preparation.<input>`); returns gm. A no-op for an empty `preparation`."""
    if not preparation:
        return gm
    if PREFIX in gm._modules:
        raise ValueError(f"the network already has a node named '{PREFIX}'")
    holder = nn.Module()
    gm.add_module(PREFIX, holder)
    for node in list(gm.graph.nodes):
        if node.op != "placeholder" or node.target not in preparation:
            continue
        stats = preparation[node.target]
        holder.add_module(node.target, Standardize(stats["mean"], stats["std"]))
        with gm.graph.inserting_after(node):
            prepared = gm.graph.call_module(f"{PREFIX}.{node.target}", (node,))
        node.replace_all_uses_with(prepared, delete_user_cb=lambda user: user is not prepared)
    gm.recompile()
    return gm


def raw_from_prepared(x: torch.Tensor, stats: dict) -> torch.Tensor:
    """Undo the standardisation (x * std + mean): the raw values a user would feed the exported model."""
    return x * stats["std"] + stats["mean"]
