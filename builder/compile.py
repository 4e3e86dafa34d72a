"""Compile a network's graph into a torch.fx.GraphModule whose generated forward is readable.

Every spec node becomes a submodule at its spec path (`stage1.0.conv1`), so the fx node, the state_dict
key prefix, torch.export's module stack and the ONNX node name all carry the name the user wrote.
"""
from __future__ import annotations

import operator
import re

import torch
import torch.fx as fx
from torch import nn

from builder.core.limits import check_memory
from builder import ops as ops_pkg
from builder.graph.meta import meta_device
from builder.spec.reader import Spec, gc_paused
from builder.core.types import BuildInfo, records


BYTES_PER_PARAM = 8  # float32 weights and the copy an initializer or export makes


def _set_submodule(root: nn.Module, path: str, module: nn.Module):
    parent = root
    parts = path.split(".")
    for part in parts[:-1]:
        child = parent._modules.get(part)
        if child is None:
            child = nn.Module()
            parent.add_module(part, child)
        parent = child
    parent.add_module(parts[-1], module)


def _class_name(name: str) -> str:
    words = re.split(r"[^0-9A-Za-z]+", name)
    out = "".join(w[:1].upper() + w[1:] for w in words if w) or "Net"
    return out if out[0].isalpha() else "Net" + out


def _fx_name(path: str) -> str:
    return re.sub(r"\W", "_", path)


def compile_network(spec: Spec, network: str | None = None, device=None) -> fx.GraphModule:
    with gc_paused():
        return _compile(spec, network, device)


def compile_all(spec: Spec, device=None) -> dict:
    """Every network of a spec (a GAN's generator and discriminator), by name."""
    return {name: compile_network(spec, name, device) for name in spec.networks}


def _compile(spec: Spec, network, device) -> fx.GraphModule:
    net = spec.network(network)
    g = net.graph
    if str(device) != "meta":  # what the weights will take, before they are allocated
        check_memory(sum(r.param_count for r in records(g)) * BYTES_PER_PARAM, f"building network "
                     f"'{net.name}' of {spec.name}")
    root = nn.Module()
    with (meta_device() if str(device) == "meta" else torch.device(device or "cpu")):
        for rec in records(g):
            if rec.op == "input" or rec.share:
                continue
            module = ops_pkg.get(rec.op).build(rec.args)
            if not rec.trainable:
                module.requires_grad_(False)
            _set_submodule(root, rec.path, module)
    for rec in records(g):
        for pname, target in (rec.tie or {}).items():
            tnode, _, tparam = target.rpartition(".")
            owner = root.get_submodule(rec.path)
            shared = root.get_submodule(tnode).get_parameter(tparam)
            delattr(owner, pname)
            owner.register_parameter(pname, shared)

    node_inits = {rec.path: rec.init for rec in records(g) if rec.init is not None}
    if node_inits:
        from builder.ops.initializers import apply_node_inits
        apply_node_inits(root, node_inits)

    graph = fx.Graph()
    env = {}
    for inp in net.inputs:
        env[(inp.name, "out")] = graph.placeholder(inp.name)
    for rec in records(g):
        if rec.op == "input":
            continue
        node = rec.path
        args = tuple(env[(src, port)] for src, port in rec.sources)
        call = graph.create_node("call_module", rec.share or node, args, {}, name=_fx_name(node))
        ports = rec.ports
        if len(ports) == 1:
            env[(node, ports[0])] = call
        else:
            for i, port in enumerate(ports):
                env[(node, port)] = graph.create_node("call_function", operator.getitem, (call, i), {},
                                                      name=_fx_name(f"{node}_{port}"))
    outs = [env[(o.node, o.port)] for o in net.outputs]
    graph.output(outs[0] if len(outs) == 1 else tuple(outs))
    gm = fx.GraphModule(root, graph, class_name=_class_name(spec.name if len(spec.networks) == 1
                                                            else f"{spec.name}_{net.name}"))
    gm.build_info = BuildInfo(spec.name, net.name, tuple(net.inputs), tuple(o.name for o in net.outputs), node_inits,
                              net)
    return gm
