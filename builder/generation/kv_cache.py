"""The key/value cache of a language model, derived from its graph: a prefill and a one-step decode module.

`plan(network)` reads the graph. A network can be cached when its only input is token ids [B, T] and
every node either works position by position (B and T stay axes 0 and 1 of every tensor it reads and
writes, and its op never reduces, moves or mixes those axes: Linear, LayerNorm, activations, add, ...) or
is an op that mixes time steps causally, with what it must remember:

    causal `attention` (grouped-query, rotary too)         keys and values of the past positions [B, kv_heads, P, d]
    causal self-`MultiheadAttention`                       keys and values of the past positions [B, heads, P, d]
    `learned_pe`, `sinusoidal_pe`, `rope`                  nothing: positions start at the past length P
    `RNN`, `LSTM`, `GRU` (one direction, no state inputs)  the hidden (and cell) state [layers, B, H]

Nodes that do not depend on the tokens at all (a `param`, an `arange` of fixed length, what is computed
from them only) are constants: they may have any shape, and the per-position ops above may broadcast them
(a `param` gain times x, an `expand` of a `param` to [B, T, D]).

Anything else (a non-causal attention, a pooling over time, a select of the last step, an op this table
does not know) leaves `plan.reason` saying which node and why; generation then recomputes the whole
context each step. `derive(module, plan)` builds both modules as torch.fx graphs over the compiled
module's own submodules (same parameters, spec paths kept):

    prefill(tokens [B, T])         -> (logits of the last position [B, 1, V], *cache)
    decode(tokens [B, 1], *cache)  -> (logits [B, 1, V], *cache one position longer)

The prefill feeds only the last position to the output node (the head, per position by construction): a
prompt's other logits are never used, and the head over a large vocabulary is the costliest layer.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field

import networkx as nx
import torch
import torch.fx as fx
from torch import nn

from builder.generation.cached_ops import CachedAttention, CachedSelfAttention, OffsetPositions
from builder.core.types import record

POSITIONWISE = {
    "Linear", "Embedding", "Dropout", "Identity", "add", "mul", "sub", "div", "scale", "matmul", "reshape",
    "ReLU", "LeakyReLU", "PReLU", "ELU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softplus", "Hardtanh", "Mish",
    "ReLU6", "SELU", "CELU", "Softsign", "Tanhshrink", "LayerNorm", "RMSNorm", "expand", "swiglu", "GLU",
    "QuickGELU",
}
AXIS_ARGS = {  # ops that act along the axes their arguments name: cacheable when those are feature axes
    "Softmax": ("dim",), "LogSoftmax": ("dim",), "concat": ("dim",), "split": ("dim",), "slice": ("dim",),
    "select": ("dim",), "mean": ("dim",), "sum": ("dim",), "unsqueeze": ("dim",), "squeeze": ("dim",),
    "transpose": ("dim0", "dim1"), "Flatten": ("start_dim",),
}
POSITION_OPS = {"learned_pe", "sinusoidal_pe"}   # a table of max_len positions
OFFSET_OPS = POSITION_OPS | {"rope"}             # the decode step passes them the past length
RECURRENT_OPS = {"RNN", "LSTM", "GRU"}


@dataclass(frozen=True)
class CacheEntry:
    """One tensor the decode step takes and gives back."""
    name: str        # `h.0.attn.sdpa.key`, `lstm.h`, `past_tokens`
    node: str        # spec path of the node that owns it
    batch_axis: int  # 0 for keys/values and tokens, 1 for recurrent states [layers, B, H]
    time_axis: int | None  # the axis that grows by one per step: 2 for keys/values, 1 for tokens, None for states


@dataclass
class CachePlan:
    """What `derive` needs, or why there is no cache (`reason`)."""
    network: object
    token_input: str
    entries: tuple = ()
    cached: dict = field(default_factory=dict)  # path -> attention, self_attention, positions or recurrent
    context: int | None = None  # positions the model has (the smallest position table), None when unbounded
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def token_input(network) -> str | None:
    """The name of a network's token input when it is a language model ([B, T] integers, T symbolic),
    else None."""
    if len(network.inputs) != 1:
        return None
    inp = network.inputs[0]
    if not inp.dtype.startswith("int") or len(inp.shape) != 2 or str(inp.shape[1]).isdigit():
        return None  # a fixed length leaves no room for new tokens
    return inp.name


def logits_shape(network) -> tuple:
    """Shape of the network's first output ([B, T, V] for a language model)."""
    out = network.outputs[0]
    return tuple(record(network.graph, out.node).out_shapes[out.port])


def context_of(network) -> int | None:
    """The positions a model has: the shortest position table among its nodes (None: no table)."""
    sizes = []
    for path in network.graph.nodes:
        r = record(network.graph, path)
        if r.op in POSITION_OPS:
            sizes.append(int(r.args.get("max_len", 5000)))
    return min(sizes) if sizes else None


def plan(network) -> CachePlan:
    """Which nodes keep a cache, or the reason the network cannot have one."""
    tokens = token_input(network)
    p = CachePlan(network, tokens, context=context_of(network))
    if tokens is None:
        p.reason = "the network does not take one [B, T] tensor of token ids"
        return p
    batch, time = network.inputs[0].shape
    g = network.graph
    live = nx.descendants(g, tokens) | {tokens}
    entries = []
    for path in g.nodes:
        r = record(g, path)
        if r.op == "input" or path not in live:  # a constant: the same tensor at every step
            continue
        kind, why = _classify(r, batch, time)
        if why is None and kind in ("attention", "self_attention") and any(src not in live for src, _ in r.sources):
            why = "keys or values that do not come from the tokens (a cache would repeat them every step)"
        if why is None:
            why = _axes_problem(r, kind, batch, time, live)
        if why is not None:
            p.reason = f"{path} ({r.op}): {why}"
            return p
        if kind is None:
            continue
        p.cached[path] = kind
        if kind in ("attention", "self_attention"):
            entries += [CacheEntry(f"{path}.key", path, 0, 2), CacheEntry(f"{path}.value", path, 0, 2)]
        elif kind == "recurrent":
            entries += [CacheEntry(f"{path}.{port}", path, 1, None) for port in r.ports[1:]]
    shape = logits_shape(network)
    if len(shape) != 3 or shape[0] != batch or shape[1] != time:
        p.reason = f"the output {network.outputs[0].name} is not per-position logits [B, T, V]"
        return p
    if "positions" in p.cached.values() and not any(e.time_axis is not None for e in entries):
        entries.append(CacheEntry("past_tokens", tokens, 0, 1))  # where the decode step reads its position
    p.entries = tuple(entries)
    return p


def _classify(r, batch, time):
    """(cache kind or None, None) for a cacheable node, else (None, reason)."""
    a = r.args
    if r.op == "attention":
        if not a.get("causal", False):
            return None, "not causal: every position attends to later ones"
        if r.slots and "mask" in r.slots:
            return None, "a padding-mask input"
        if r.slots and "bias" in r.slots:
            return None, "an additive bias input (its [T, S] table would need the past positions)"
        return "attention", None
    if r.op == "MultiheadAttention":
        if not a.get("causal", False):
            return None, "not causal: every position attends to later ones"
        if len(set(r.sources)) != 1 or (r.slots and set(r.slots) - {"query", "key", "value"}):
            return None, "not self-attention over one input"
        if a.get("add_bias_kv") or a.get("add_zero_attn") or a.get("kdim") or a.get("vdim"):
            return None, "extra key/value options (add_bias_kv, add_zero_attn, kdim, vdim)"
        return "self_attention", None
    if r.op in OFFSET_OPS:
        return "positions", None
    if r.op in ("arange", "alibi"):
        return None, "a table over T read from the tokens: it would restart at position 0 in a decode step"
    if r.op in RECURRENT_OPS:
        if a.get("bidirectional"):
            return None, "bidirectional: every position sees later ones"
        if len(r.sources) > 1:
            return None, "initial-state inputs"
        return "recurrent", None
    if r.op in POSITIONWISE:
        if r.op in ("LayerNorm", "RMSNorm"):
            normalized = a.get("normalized_shape")
            count = len(normalized) if isinstance(normalized, (list, tuple)) else 1
            rank = len(r.in_shapes[0])
            if count > rank - 2:
                return None, "normalises over the time axis"
        return None, None
    if r.op in AXIS_ARGS:
        rank = len(r.in_shapes[0]) if r.in_shapes else 0
        if r.op == "unsqueeze":
            rank += 1
        for key in AXIS_ARGS[r.op]:
            value = a.get(key, 1 if key == "start_dim" else -1)
            for dim in value if isinstance(value, (list, tuple)) else [value]:
                if dim is None or (dim if dim >= 0 else dim + rank) < 2:
                    return None, f"acts along the batch or time axis ({key}={value})"
        return None, None
    if r.op == "permute":
        dims = list(a.get("dims") or ())
        return (None, None) if dims[:2] == [0, 1] else (None, "moves the batch or time axis")
    return None, "this op may mix time steps (not in the cache's table of per-position ops)"


def _axes_problem(r, kind, batch, time, live):
    """Every tensor a node reads and writes keeps B and T as axes 0 and 1 (a recurrent node: its input and
    `output` port; its states are the cache); constants it reads (not `live`: not from the tokens) broadcast."""
    shapes = [s for s, (src, _) in zip(r.in_shapes, r.sources) if src in live]
    shapes = shapes[:1] if kind == "recurrent" else shapes
    ports = r.ports[:1] if kind == "recurrent" else r.ports
    shapes += [r.out_shapes[p] for p in ports]
    for s in shapes:
        if len(s) < 2 or s[0] != batch or s[1] != time:
            return f"reads or writes a tensor without [B, T] leading axes ({list(s)})"
    return None


# ---- the derived modules ------------------------------------------------------------------------------


def _fx_name(path: str) -> str:
    return re.sub(r"\W", "_", path)


def _install(root: nn.Module, path: str, module: nn.Module) -> None:
    parent = root
    *parents, last = path.split(".")
    for part in parents:
        if part not in parent._modules:
            parent.add_module(part, nn.Module())
        parent = parent._modules[part]
    if last not in parent._modules:
        parent.add_module(last, module)


WRAPPERS = {"attention": CachedAttention, "self_attention": CachedSelfAttention}


def derive(module: fx.GraphModule, cache_plan: CachePlan, decode: bool) -> fx.GraphModule:
    """The prefill (decode=False) or decode module of a compiled network, per `cache_plan`."""
    if not cache_plan.ok:
        raise ValueError(f"no cache: {cache_plan.reason}")
    g = cache_plan.network.graph
    root, graph, env = nn.Module(), fx.Graph(), {}

    def item(node, index, name):
        return graph.create_node("call_function", operator.getitem, (node, index), name=name)

    tokens = graph.placeholder(_fx_name(cache_plan.token_input))
    env[(cache_plan.token_input, "out")] = tokens
    past = {e.name: graph.placeholder(_fx_name("past." + e.name)) for e in cache_plan.entries} if decode else {}
    past_len = 0
    timed = [e for e in cache_plan.entries if e.time_axis is not None]
    if decode and timed:
        past_len = graph.call_method("size", (past[timed[0].name], timed[0].time_axis))
    out = cache_plan.network.outputs[0]
    last_only = out.node if not decode and out.node not in cache_plan.cached and g.out_degree(out.node) == 0 else None
    present = {}
    for path in g.nodes:
        r = record(g, path)
        if r.op == "input":
            continue
        kind = cache_plan.cached.get(path)
        target = r.share or path
        inner = module.get_submodule(target)
        args = [env[s] for s in r.sources]
        name = _fx_name(path)
        if path == last_only:  # per position: the head of the prompt's last position is all a step needs
            args = [item(a, (slice(None), slice(-1, None)), f"{name}_last") for a in args]
        if kind in WRAPPERS:
            _install(root, target, WRAPPERS[kind](inner))
            extra = [past[f"{path}.key"], past[f"{path}.value"]] if decode else []
            call = graph.create_node("call_module", target, tuple(args + extra), name=name)
            env[(path, r.ports[0])] = item(call, 0, f"{name}_out")
            present[f"{path}.key"] = item(call, 1, f"{name}_key")
            present[f"{path}.value"] = item(call, 2, f"{name}_value")
            continue
        if kind == "positions" and decode:
            _install(root, target, OffsetPositions(inner))
            env[(path, r.ports[0])] = graph.create_node("call_module", target, (args[0], past_len), name=name)
            continue
        _install(root, target, inner)
        if kind == "recurrent" and decode:
            args += [past[f"{path}.{port}"] for port in r.ports[1:]]
        call = graph.create_node("call_module", target, tuple(args), name=name)
        if len(r.ports) == 1:
            env[(path, r.ports[0])] = call
        else:
            for i, port in enumerate(r.ports):
                env[(path, port)] = item(call, i, _fx_name(f"{path}_{port}"))
        if kind == "recurrent":
            present.update({f"{path}.{port}": env[(path, port)] for port in r.ports[1:]})
    if any(e.name == "past_tokens" for e in cache_plan.entries):
        present["past_tokens"] = graph.call_function(torch.cat, ([past["past_tokens"], tokens], 1)) \
            if decode else tokens
    graph.output((env[(out.node, out.port)], *[present[e.name] for e in cache_plan.entries]))
    cls = type(module).__name__ + ("Decode" if decode else "Prefill")
    derived = fx.GraphModule(root, graph, class_name=cls)
    derived.cache_entries = cache_plan.entries
    return derived.train(module.training)
