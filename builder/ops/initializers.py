"""`train.init`: how weights start, for the whole network or per spec path (later rules win).

    init: xavier_uniform                      # every weight matrix / kernel; their biases to zero
    init: {type: normal, std: 0.01}
    init: [xavier_uniform, {params: "head.*", type: zeros}, {params: "*.bias", type: constant, value: 0.1}]

A node's own `init:` in the spec (applied when the network is compiled, see `apply_node_inits`) wins: the
train section's rules leave that node's parameters alone.

A rule without `params` touches weights with two or more dimensions (linear, conv, embedding, rnn) and the
biases next to them; norm layers keep their ones and zeros. A rule with `params` (glob patterns of
parameter names or module paths) touches exactly what it matches; fan-based rules (xavier, kaiming) set
one-dimensional parameters to zero, since they have no fan.
"""
from __future__ import annotations

import fnmatch

import torch
import torch.nn as nn

from builder.core.choices import pick
from builder.core.errors import UserError

INITS = {
    "xavier_uniform": lambda t, gain=1.0: nn.init.xavier_uniform_(t, gain=gain),
    "xavier_normal": lambda t, gain=1.0: nn.init.xavier_normal_(t, gain=gain),
    "kaiming_uniform": lambda t, nonlinearity="relu", a=0.0, mode="fan_in":
        nn.init.kaiming_uniform_(t, a=a, mode=mode, nonlinearity=nonlinearity),
    "kaiming_normal": lambda t, nonlinearity="relu", a=0.0, mode="fan_in":
        nn.init.kaiming_normal_(t, a=a, mode=mode, nonlinearity=nonlinearity),
    "normal": lambda t, mean=0.0, std=0.01: nn.init.normal_(t, mean=mean, std=std),
    "uniform": lambda t, low=-0.05, high=0.05: nn.init.uniform_(t, a=low, b=high),
    "zeros": lambda t: nn.init.zeros_(t),
    "ones": lambda t: nn.init.ones_(t),
    "constant": lambda t, value=0.0: nn.init.constant_(t, value),
    "orthogonal": lambda t, gain=1.0: nn.init.orthogonal_(t, gain=gain),
}
INITS["kaiming"] = INITS["kaiming_normal"]
FAN_BASED = {"xavier_uniform", "xavier_normal", "kaiming", "kaiming_uniform", "kaiming_normal", "orthogonal"}


def matches(name: str, patterns) -> bool:
    """A parameter name (`stage1.0.conv1.weight`) matches a glob or a list of globs, on its full name or
    on its module's path; shared by `init:` rules and the optimizer's param groups."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    module_path = name.rsplit(".", 1)[0]
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(module_path, p) for p in patterns)


def _rules(cfg):
    items = cfg if isinstance(cfg, list) else [cfg]
    return [{"type": r} if isinstance(r, str) else dict(r) for r in items]


def _init_fn(rule):
    rule = dict(rule)
    name = rule.pop("type", None)
    rule.pop("params", None)
    fn = pick(INITS, name, "train.init", "initializer")
    try:
        fn(torch.empty(2, 2), **rule)  # check the options once, on a scratch tensor
    except TypeError:
        raise UserError(f"train.init: {name} takes no option(s) {sorted(rule)}") from None
    return name, lambda t: fn(t, **rule)


def check_init(cfg) -> None:
    """Check the rules' names and options (which parameters they match is known only with a network)."""
    for rule in _rules(cfg) if cfg else []:
        _init_fn(rule)


@torch.no_grad()
def apply_init(model: nn.Module, cfg, skip=()) -> None:
    """Re-initialise `model`'s parameters in place by the `init:` rules (uses the global torch RNG);
    parameters of the modules named in `skip` (nodes with their own init) are left alone."""
    if not cfg:
        return
    params = {n: p for n, p in model.named_parameters() if not _under(n, skip)}
    for rule in _rules(cfg):
        name, fn = _init_fn(rule)
        if "params" in rule:
            chosen = [n for n in params if matches(n, rule["params"])]
            if not chosen and not any(matches(n, rule["params"]) for n, _ in model.named_parameters()):
                raise UserError(f"train.init: no parameter matches {rule['params']!r}")
        else:
            chosen = [n for n in _default_targets(model) if n in params]
        for n in chosen:
            _init_one(params[n], name, fn)


@torch.no_grad()
def apply_node_inits(root: nn.Module, node_inits: dict) -> None:
    """A spec node's `init:` (a rule as above, without `params`) applied to that node's module: its
    weight matrices/kernels and their biases, or every parameter when it has no weight matrix (a norm)."""
    for node, cfg in node_inits.items():
        module = root.get_submodule(node)
        targets = _default_targets(module) or [n for n, _ in module.named_parameters()]
        params = dict(module.named_parameters())
        for rule in _rules(cfg):
            name, fn = _init_fn(rule)
            for n in targets:
                _init_one(params[n], name, fn)


def _init_one(p, name, fn):
    if p.dim() < 2 and name in FAN_BASED:
        nn.init.zeros_(p)
    else:
        fn(p)


def _under(name, paths):
    return any(name.startswith(path + ".") for path in paths)


def _default_targets(model):
    """Weights with >= 2 dims, and every bias of the modules that own such a weight."""
    out = []
    for mod_name, mod in model.named_modules():
        own = dict(mod.named_parameters(recurse=False))
        if any(p.dim() >= 2 for p in own.values()):
            prefix = f"{mod_name}." if mod_name else ""
            out += [prefix + n for n, p in own.items() if p.dim() >= 2 or "bias" in n]
    return out
