"""What the trainer fitted on the training data, carried to export and predict.

`train.data.standardize` makes the trainer feed (x - mean) / std with the training split's statistics;
`standardize_target` makes it train on (y - mean) / std. Both are saved in every checkpoint
(`input_preparation`, `output_preparation`), and `build export` / `build predict --run` put the same
steps into the network: standardisation first, de-standardisation of the first output last, so a
deployed model takes raw inputs and answers in the data's units. What cannot be a graph op (class names,
a CSV's columns and category vocabularies) travels beside it (`carried`, ONNX metadata).
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


class Destandardize(nn.Module):
    """y * std + mean: a network trained on standardised targets, answering in the data's units."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float())

    def forward(self, y):
        return y * self.std + self.mean


PREFIX = "input_preparation"
OUTPUT_PREFIX = "output_preparation"


def output_statistics(outputs, stats) -> dict:
    """{first output name: {"mean", "std"}} from the data's target (mean, std), or {} without one."""
    if not stats or not outputs:
        return {}
    mean, std = stats
    shape = () if mean.numel() == 1 else tuple(mean.shape)
    return {list(outputs)[0]: {"mean": mean.reshape(shape), "std": std.reshape(shape)}}


def carried(checkpoint: dict) -> dict:
    """The preparation a checkpoint carries, as plain JSON data (the run folder's preparation.json)."""
    def plain(v):
        if isinstance(v, torch.Tensor):
            return v.tolist()
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    keys = ("input_preparation", "output_preparation", "class_labels", "data_layout")
    return {k: plain(checkpoint[k]) for k in keys if checkpoint.get(k)}


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
        elif mean.dim() == len(sample) and all(m in (1, s) for m, s in zip(mean.shape, sample)):
            out[spec.name] = {"mean": mean, "std": std}  # per channel ([C, 1, 1]): broadcast over the image
    return out


def include(gm, preparation: dict, output: dict | None = None):
    """Insert each input's standardisation as the first op of the fx graph (submodule
    `input_preparation.<input>`) and the target's de-standardisation after the first output
    (`output_preparation.<output>`); returns gm. A no-op for empty dicts."""
    if output:
        _include_output(gm, output)
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


def _include_output(gm, output: dict):
    if OUTPUT_PREFIX in gm._modules:
        raise ValueError(f"the network already has a node named '{OUTPUT_PREFIX}'")
    (name, stats), = output.items()
    holder = nn.Module()
    gm.add_module(OUTPUT_PREFIX, holder)
    holder.add_module(name, Destandardize(stats["mean"], stats["std"]))
    out = next(n for n in gm.graph.nodes if n.op == "output")
    result = out.args[0]
    first = result[0] if isinstance(result, (tuple, list)) else result
    with gm.graph.inserting_before(out):
        unscaled = gm.graph.call_module(f"{OUTPUT_PREFIX}.{name}", (first,))
    out.args = ((unscaled, *result[1:]) if isinstance(result, tuple) else
                [unscaled, *result[1:]] if isinstance(result, list) else unscaled,)
    gm.recompile()


def raw_from_prepared(x: torch.Tensor, stats: dict) -> torch.Tensor:
    """Undo the standardisation (x * std + mean): the raw values a user would feed the exported model."""
    return x * stats["std"] + stats["mean"]
