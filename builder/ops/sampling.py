"""Random samples shaped like a tensor: `randn_like` (standard normal) and `rand_like` (uniform [0, 1)).

They draw in training and in eval alike (a VAE's reparameterisation `mu + exp(logvar / 2) * eps`
samples at inference too) from torch's global generator, so a seeded run repeats exactly and
`--resume` (which restores the RNG states) continues the same sequence of draws. ONNX export gives
`RandomNormalLike` / `RandomUniformLike`; verification cannot compare samples, so it compares the
outputs that do not depend on one and checks only the shape and dtype of those that do
(`sampled_outputs`).
"""
from __future__ import annotations

import torch
from torch import nn

from builder.ops.registry import OpDef, register


class RandnLike(nn.Module):
    sampled = True  # its output is a random draw (read by sampled_outputs)

    def forward(self, x):
        return torch.randn_like(x)


class RandLike(nn.Module):
    sampled = True

    def forward(self, x):
        return torch.rand_like(x)


register(OpDef(name="randn_like", infer=lambda ctx: ctx.shapes[0], build=lambda a: RandnLike(), arg_names=(),
               in_dtype="float", category="random",
               doc="torch.randn_like(x): standard normal samples of x's shape and dtype (training and eval)",
               shape_doc='the shape and dtype of x',
               onnx='RandomNormalLike; the export check compares its shape and dtype only'))
register(OpDef(name="rand_like", infer=lambda ctx: ctx.shapes[0], build=lambda a: RandLike(), arg_names=(),
               in_dtype="float", category="random",
               doc="torch.rand_like(x): uniform [0, 1) samples of x's shape and dtype (training and eval)",
               shape_doc='the shape and dtype of x',
               onnx='RandomUniformLike; the export check compares its shape and dtype only'))


def sampled_outputs(module: torch.fx.GraphModule) -> set[int]:
    """Indices of the module's outputs that depend on a random draw (through any path)."""
    random = set()
    outputs = []
    for node in module.graph.nodes:
        if node.op == "call_module" and getattr(module.get_submodule(node.target), "sampled", False):
            random.add(node)
        elif any(a in random for a in node.all_input_nodes) and node.op != "output":
            random.add(node)
        if node.op == "output":
            out = node.args[0]
            outputs = list(out) if isinstance(out, (tuple, list)) else [out]
    return {i for i, o in enumerate(outputs) if o in random}
