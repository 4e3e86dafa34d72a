"""A declarative neural-network builder: YAML spec -> checked networkx graph -> torch module.

    spec = builder.load("specs/tiny_resnet.yaml", width=32)
    module = builder.build(spec)
"""
from __future__ import annotations

from pathlib import Path

from builder.core.errors import Diagnostic, SpecError, UserError
from builder.spec.reader import Spec
from builder.spec.reader import load as _load
from builder.core.types import BuildInfo, Network, NodeRecord, OutputRef, TensorSpec

__version__ = "0.1.0"
__all__ = ["load", "build", "build_all", "generate", "Spec", "Network", "TensorSpec", "OutputRef", "NodeRecord",
           "BuildInfo", "SpecError", "UserError", "Diagnostic", "__version__"]


def load(path, overrides: dict | None = None, safe: bool = False, **params) -> Spec:
    """Load and check a spec (a path or YAML text); keyword params override the spec's params."""
    return _load(path, overrides=overrides, safe=safe, **params)


def build(spec_or_path, network: str | None = None, device=None, **params):
    """The torch.fx.GraphModule of a spec's network (the only one unless `network` names one)."""
    from builder.compile import compile_network
    spec = spec_or_path if isinstance(spec_or_path, Spec) else load(spec_or_path, **params)
    return compile_network(spec, network, device)


def build_all(spec_or_path, device=None, **params) -> dict:
    """Every network of a spec (a GAN's generator and discriminator), by name."""
    from builder.compile import compile_all
    spec = spec_or_path if isinstance(spec_or_path, Spec) else load(spec_or_path, **params)
    return compile_all(spec, device)


def generate(model, ids, max_new_tokens, temperature=0.0, top_k=None, top_p=None, seed=None, use_cache=True):
    """`ids` [B, T] (int64) and `max_new_tokens` tokens the language model `model` (from `build`) writes after
    them: [B, T + max_new_tokens]. temperature 0 is greedy; see builder.generation.loop."""
    from builder.generation.loop import generate as _generate
    return _generate(model, ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                     use_cache=use_cache)


def __getattr__(name):
    # builder.train / builder.load_weights live in modules other stages own; import on first use
    if name == "train":
        from builder.training.entry import train
        return train
    if name == "load_weights":
        from builder.weights.loader import load_weights
        return load_weights
    raise AttributeError(name)
