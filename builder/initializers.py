"""`train.init`: how weights start, for the whole network or per spec path (later rules win).

    init: xavier_uniform                      # every weight matrix / kernel; their biases to zero
    init: {type: normal, std: 0.01}
    init: [xavier_uniform, {params: "head.*", type: zeros}, {params: "*.bias", type: constant, value: 0.1}]

A rule without `params` touches weights with two or more dimensions (linear, conv, embedding, rnn) and the
biases next to them; norm layers keep their ones and zeros. A rule with `params` (glob patterns of
parameter names or module paths) touches exactly what it matches; fan-based rules (xavier, kaiming) set
one-dimensional parameters to zero, since they have no fan.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .errors import UserError, did_you_mean
from .optim import _matches

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


def _rules(cfg):
    items = cfg if isinstance(cfg, list) else [cfg]
    return [{"type": r} if isinstance(r, str) else dict(r) for r in items]


def _init_fn(rule):
    rule = dict(rule)
    name = rule.pop("type", None)
    rule.pop("params", None)
    if name not in INITS:
        hint = did_you_mean(name, INITS) if name else None
        raise UserError(f"train.init: unknown initializer {name!r}" + (f" ({hint})" if hint else "")
                        + f"; known: {', '.join(INITS)}")
    fn = INITS[name]
    try:
        fn(torch.empty(2, 2), **rule)  # check the options once, on a scratch tensor
    except TypeError:
        raise UserError(f"train.init: {name} takes no option(s) {sorted(rule)}") from None
    return name, lambda t: fn(t, **rule)


@torch.no_grad()
def apply_init(model: nn.Module, cfg) -> None:
    """Re-initialise `model`'s parameters in place by the `init:` rules (uses the global torch RNG)."""
    if not cfg:
        return
    params = dict(model.named_parameters())
    for rule in _rules(cfg):
        name, fn = _init_fn(rule)
        if "params" in rule:
            chosen = [n for n in params if _matches(n, rule["params"])]
            if not chosen:
                raise UserError(f"train.init: no parameter matches {rule['params']!r}")
        else:
            chosen = _default_targets(model)
        for n in chosen:
            p = params[n]
            if p.dim() < 2 and name in FAN_BASED:
                nn.init.zeros_(p)
            else:
                fn(p)
    # a node's own `init:` in the spec is more specific than the recipe's, so it is applied last
    apply_node_inits(model, getattr(model, "node_inits", None) or {})


def apply_node_inits(root: nn.Module, node_inits: dict) -> None:
    """Apply the per-node `init:` of a spec (node path -> init rule(s)) to those nodes' parameters."""
    for path, cfg in node_inits.items():
        try:
            module = root.get_submodule(path)
        except AttributeError:
            continue  # a node sharing another node's module has no submodule of its own
        try:
            apply_init(module, cfg)
        except UserError as e:
            raise UserError(f"{path}: init: {str(e).removeprefix('train.init: ')}") from None


def _default_targets(model):
    """Weights with >= 2 dims, and every bias of the modules that own such a weight."""
    out = []
    for mod_name, mod in model.named_modules():
        own = dict(mod.named_parameters(recurse=False))
        if any(p.dim() >= 2 for p in own.values()):
            prefix = f"{mod_name}." if mod_name else ""
            out += [prefix + n for n, p in own.items() if p.dim() >= 2 or "bias" in n]
    return out
