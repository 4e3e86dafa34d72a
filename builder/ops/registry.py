"""The one table of ops. Each op declares how to build its module, which constructor sizes it infers,
how its output shapes follow from its inputs, and its output port names.

Third-party ops register through the `builder.ops` entry-point group or `--plugin module`; a spec alone
can never import or run code.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Callable

from builder.core.errors import UserError


@dataclass
class InferContext:
    """What a shape function sees: input shapes/dtypes and the (mutable) resolved args."""
    shapes: list
    dtypes: list
    args: dict
    slots: list | None = None  # input slot names for dict inputs

    def arg(self, name, default=None):
        return self.args.get(name, default)


@dataclass
class OpDef:
    name: str
    infer: Callable[[InferContext], object]           # -> shape, or dict port -> shape
    build: Callable[[dict], object] | None = None     # args -> nn.Module
    ports: tuple | Callable[[dict], tuple] = ("out",)
    arity: tuple = (1, 1)                              # (min, max) number of inputs; max None = any
    slots: tuple | None = None                         # named inputs accepted for dict `in:`
    required_slots: tuple = ()
    arg_names: tuple | None = None                     # allowed args (None: from the torch class signature)
    required: tuple = ()
    inferred: tuple = ()                               # sizes the user never writes
    in_dtype: str | None = "float"                     # "float", "int" or None (any)
    out_dtype: Callable[[InferContext], str] | None = None
    macs: Callable[[InferContext, dict], int] | None = None
    torch_class: type | None = None
    doc: str = ""                                      # one line for the docs (default: see summary())
    category: str = "layer"
    aliases: tuple = field(default_factory=tuple)
    arg_schema: dict = field(default_factory=dict)     # arg -> JSON Schema of a structured value (attention's rope)
    shape_doc: str = ""                                # the shape rule in words (default: torch's Shape section)
    onnx: str = ""                                     # how it goes to ONNX, when not the plain exporter's way

    def summary(self) -> str:
        """One line for the docs: `doc`, else the first line of the build callable's or torch class's docstring."""
        for text in (self.doc, getattr(self.build, "__doc__", None), getattr(self.torch_class, "__doc__", None)):
            if text and text.strip():
                return " ".join(text.strip().split("\n\n")[0].split())    # the first paragraph, one line
        return ""

    def port_names(self, args) -> tuple:
        return self.ports(args) if callable(self.ports) else self.ports

    def allowed_args(self) -> tuple:
        if self.arg_names is not None:
            return tuple(self.arg_names)
        if self.torch_class is not None:
            if "_signature" not in self.__dict__:
                params = inspect.signature(self.torch_class.__init__).parameters
                self._signature = tuple(p for p in params if p not in ("self", "device", "dtype", "args", "kwargs"))
            return self._signature
        return ()


REGISTRY: dict[str, OpDef] = {}


def public_args(args: dict) -> dict:
    """An op's arguments without the private entries shape rules add for the builder (`_sections`, ...)."""
    return {k: v for k, v in args.items() if not k.startswith("_")}


def register(op: OpDef) -> OpDef:
    if op.name in REGISTRY:
        raise ValueError(f"op '{op.name}' registered twice")
    REGISTRY[op.name] = op
    for alias in op.aliases:
        REGISTRY[alias] = op
    return op


def get(name: str) -> OpDef | None:
    return REGISTRY.get(name)


def names() -> list[str]:
    return sorted(REGISTRY)


_loaded_plugins: set[str] = set()


def load_plugin(module_name: str):
    """Import a plug-in module named on the command line (`--plugin`); it calls `register(...)`."""
    if module_name in _loaded_plugins:
        return
    try:
        importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"cannot import plug-in module '{module_name}': {e}") from None
    _loaded_plugins.add(module_name)


def load_entry_points():
    """Ops installed by other packages under the `builder.ops` entry-point group."""
    from importlib.metadata import entry_points
    for ep in entry_points(group="builder.ops"):
        if ep.value in _loaded_plugins:
            continue
        try:
            obj = ep.load()
        except Exception as e:  # a broken third-party package must not break builder itself
            raise UserError(f"plug-in entry point '{ep.name}' failed to load: {e}") from None
        if callable(obj):
            obj()
        _loaded_plugins.add(ep.value)
