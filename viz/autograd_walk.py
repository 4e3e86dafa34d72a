"""One forward and backward pass, recorded as a plain graph of autograd nodes.

Forward hooks on the module's submodules note which autograd nodes each submodule created (the nodes
reachable from its outputs that did not exist when it was called; the innermost submodule wins).
Pre-hooks on the autograd nodes record, during backward, the shape of each node's forward output and
the norm of the gradient that reached it. The walk from `loss.grad_fn` then gives the graph:
operation nodes, edges in the direction gradients flow, leaves (parameters and inputs), and the root.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import torch

from viz.grad_fn_names import plain_name


@dataclass
class GradStat:
    norm: float | None  # None when the gradient is None
    numel: int = 0


@dataclass
class ValueStat:
    """The forward value a submodule produced: shape, mean and standard deviation."""
    shape: tuple
    mean: float
    std: float


@dataclass
class OpNode:
    id: str
    kind: str  # autograd class name, e.g. AddmmBackward0
    words: str  # plain words, e.g. 'Linear (addmm) backward'
    path: str  # spec path (submodule name) that created it; '' when made outside any submodule
    shape: tuple | None = None  # shape of the forward output this node differentiates
    grad: GradStat | None = None  # norm of the gradient that reached it during backward
    leaf: str | None = None  # for AccumulateGrad: the id of its leaf (parameter or input)


@dataclass
class Leaf:
    id: str  # the parameter's first name (state_dict key) or the input's name
    kind: str  # 'param' or 'input'
    path: str  # owning submodule ('' for inputs)
    shape: tuple
    names: list = field(default_factory=list)  # every name of a tied parameter
    grad: GradStat | None = None
    norm: float = 0.0  # norm of the value itself
    requires_grad: bool = True
    torch_name: str = ""  # the name inside the torch module of its spec node: 'weight_ih_l0'


@dataclass
class BackwardTrace:
    loss: float
    loss_name: str
    root: str | None  # id of loss.grad_fn's node
    ops: dict  # id -> OpNode, in walk order (breadth first from the root)
    edges: list  # (from id, to id) in the direction gradients flow
    leaves: dict  # id -> Leaf (parameters in module order, then inputs)
    module_types: dict = field(default_factory=dict)  # submodule name -> class name
    values: dict = field(default_factory=dict)  # submodule name -> ValueStat of its (first) output


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def grad_stat(g: torch.Tensor | None) -> GradStat:
    if g is None:
        return GradStat(None, 0)
    return GradStat(float(torch.linalg.vector_norm(g.detach().float())), g.numel())


class _CreatorHooks:
    """Forward hooks that record which submodule created each autograd node."""

    def __init__(self, module: torch.nn.Module, callers: dict | None = None):
        self.callers = callers or {}  # shared submodule name -> spec paths that call it, in call order
        self.calls: dict = {}
        self.owner: dict = {}  # autograd node -> submodule name (or the spec path that called it)
        self.values: dict = {}  # submodule name -> ValueStat of its first call's first float output
        self.stack: list = []  # boundary sets of the calls in progress
        self.handles = []
        for name, sub in module.named_modules():
            if name:
                self.handles.append(sub.register_forward_pre_hook(self._pre, with_kwargs=True))
                self.handles.append(sub.register_forward_hook(self._make_post(name), with_kwargs=True))

    def _pre(self, mod, args, kwargs):
        self.stack.append({t.grad_fn for t in _tensors((args, kwargs)) if t.grad_fn is not None})

    def _make_post(self, name):
        def post(mod, args, kwargs, output):
            boundary = self.stack.pop() if self.stack else set()
            who = name
            if name in self.callers:  # a module shared by several spec nodes: credit the k-th caller
                k = self.calls.get(name, 0)
                self.calls[name] = k + 1
                who = self.callers[name][k] if k < len(self.callers[name]) else name
            if who not in self.values:
                first = next((t for t in _tensors(output) if t.is_floating_point() and t.numel()), None)
                if first is not None:
                    v = first.detach().float()
                    std = float(v.std()) if v.numel() > 1 else 0.0
                    self.values[who] = ValueStat(tuple(v.shape), float(v.mean()), std)
            todo = [t.grad_fn for t in _tensors(output) if t.grad_fn is not None]
            while todo:
                fn = todo.pop()
                if fn in self.owner or fn in boundary or type(fn).__name__ == "AccumulateGrad":
                    continue
                self.owner[fn] = who
                todo.extend(f for f, _ in fn.next_functions if f is not None)
        return post

    def remove(self):
        for h in self.handles:
            h.remove()


def _prepare_inputs(inputs: dict) -> dict:
    """Float inputs become leaves that require grad, so they appear in the backward graph."""
    out = {}
    for name, x in inputs.items():
        if torch.is_floating_point(x):
            x = x.detach().clone().requires_grad_(True)
        out[name] = x
    return out


def record_backward(module: torch.nn.Module, inputs: dict, loss_fn: Callable, loss_name: str = "loss",
                    spec_paths: set | None = None, callers: dict | None = None) -> BackwardTrace:
    """Run `loss_fn(module(*inputs.values()))`, backward it once, and return the recorded graph.

    inputs: name -> tensor, in the module's argument order. spec_paths: names of the submodules that are
    spec nodes; an autograd node made inside a deeper submodule is credited to its nearest spec node.
    callers: for a submodule several spec nodes call (`share:`), those spec paths in call order, so each
    call's autograd nodes go to the spec node that made the call.
    """
    inputs = _prepare_inputs(inputs)
    hooks = _CreatorHooks(module, callers)
    try:
        output = module(*inputs.values())
    finally:
        hooks.remove()
    loss = loss_fn(output)
    if loss.grad_fn is None:
        raise RuntimeError("the loss does not depend on any parameter or input that requires grad")

    param_names: dict[int, list[str]] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        param_names.setdefault(id(p), []).append(name)
    leaf_of_tensor: dict[int, str] = {}
    leaves: dict[str, Leaf] = {}
    for name, p in module.named_parameters():
        names = param_names[id(p)]
        owner = _spec_owner(name.rpartition(".")[0], spec_paths)
        leaves[name] = Leaf(name, "param", owner, tuple(p.shape), names, None,
                            float(torch.linalg.vector_norm(p.detach().float())), p.requires_grad)
        leaves[name].torch_name = torch_name(module, owner, name)
        leaf_of_tensor[id(p)] = name
    for name, x in inputs.items():
        leaves[name] = Leaf(name, "input", "", tuple(x.shape), [name], None, 0.0, x.requires_grad)
        leaf_of_tensor[id(x)] = name

    # breadth-first walk from the root; ids are '<spec path or loss>:<class>' with a counter when repeated
    ops: dict[str, OpNode] = {}
    fn_id: dict = {}
    counts: dict[str, int] = {}
    edges: list[tuple[str, str]] = []
    queue = deque([loss.grad_fn])
    order = []
    while queue:
        fn = queue.popleft()
        if fn in fn_id:
            continue
        kind = type(fn).__name__
        path = _spec_owner(hooks.owner.get(fn, ""), spec_paths)
        leaf = None
        if kind == "AccumulateGrad":
            leaf = leaf_of_tensor.get(id(fn.variable))
            if leaf is None:  # a leaf tensor that is neither a parameter nor an input (a captured tensor)
                leaf = f"tensor{len(leaves)}"
                leaves[leaf] = Leaf(leaf, "input", "", tuple(fn.variable.shape), [leaf])
                leaf_of_tensor[id(fn.variable)] = leaf
            path = leaves[leaf].path
        base = f"{leaf}:{kind}" if leaf else f"{path or '#' + loss_name}:{kind}"  # '#': never a spec path
        counts[base] = counts.get(base, 0) + 1
        node_id = base if counts[base] == 1 else f"{base}:{counts[base]}"
        fn_id[fn] = node_id
        ops[node_id] = OpNode(node_id, kind, plain_name(kind), path, leaf=leaf)
        order.append(fn)
        queue.extend(f for f, _ in fn.next_functions if f is not None)
    for fn in order:
        for f, _ in fn.next_functions:
            if f is not None:
                edges.append((fn_id[fn], fn_id[f]))

    handles = []
    for fn in order:
        if type(fn).__name__ != "AccumulateGrad":
            handles.append(fn.register_prehook(_make_prehook(ops[fn_id[fn]])))
    try:
        loss.backward()
    finally:
        for h in handles:
            h.remove()
    for name, p in module.named_parameters():
        leaves[name].grad = grad_stat(p.grad)
    for name, x in inputs.items():
        leaves[name].grad = grad_stat(x.grad) if x.requires_grad else None
    types = {name: type(m).__name__ for name, m in module.named_modules() if name}
    return BackwardTrace(float(loss.detach()), loss_name, fn_id[loss.grad_fn], ops, edges, leaves, types,
                         hooks.values)


def torch_name(module: torch.nn.Module, owner: str, name: str) -> str:
    """The parameter's name inside the torch module its spec node wraps: 'lstm.rnn.weight_ih_l0' of spec
    node 'lstm' is 'weight_ih_l0' (the wrapper level 'rnn' is ours, not the user's nor torch's)."""
    rest = name[len(owner) + 1:] if owner else name
    try:
        sub = module.get_submodule(owner) if owner else module
    except AttributeError:
        return rest
    children = list(sub.named_children())
    if len(children) == 1 and not list(sub.named_parameters(recurse=False)) and "." in rest \
            and rest.split(".", 1)[0] == children[0][0]:
        return rest.split(".", 1)[1]
    return rest


def _make_prehook(node: OpNode):
    def prehook(grad_outputs):
        for g in grad_outputs:
            if g is not None:
                node.shape = tuple(g.shape)
                node.grad = grad_stat(g)
                break
        return None
    return prehook


def _spec_owner(name: str, spec_paths: set | None) -> str:
    """The nearest enclosing spec node of submodule `name` (itself when spec_paths is None)."""
    if spec_paths is None:
        return name
    while name and name not in spec_paths:
        name = name.rpartition(".")[0]
    return name
