"""The op registry and the built-in ops (importing this package registers them)."""
from builder.ops import (elementwise, layers, layers_extra, llm, masks, params, reductions, sampling, sequence,
                         tensor, vision)
from builder.ops.registry import (REGISTRY, InferContext, OpDef, get, load_entry_points, load_plugin, names, register)

__all__ = ["REGISTRY", "InferContext", "OpDef", "get", "names", "register", "load_plugin", "load_entry_points"]
