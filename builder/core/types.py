"""The types that pass between the stages (spec -> graph -> compile -> train | export | draw), and the limits.

This module imports no stage, so every stage can import it: the spec reader and the graph passes meet here
instead of importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# ---- the spec language's words and limits -------------------------------------------------------------
NODE_KEYS = ("op", "block", "in", "repeat", "share", "tie", "init", "trainable", "when", "doc")
BLOCK_KEYS = ("params", "inputs", "nodes", "outputs", "description")
INPUT_KEYS = ("shape", "dtype", "range", "doc")
DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "bool")
MAX_DIM = 2**31
MAX_NODES = 20_000  # about 10x the graph of GPT-2 XL; checking this many nodes takes seconds
MAX_REPEAT = 10_000
MAX_BLOCK_DEPTH = 32
MAX_PARAMS = 10**11
MAX_ELEMENTS = 2**34  # per example; 17 G elements = 68 GB of float32
RECORD_KEY = "record"  # the one key of a finished graph node's attribute dict: its NodeRecord
DRAFT_KEY = "draft"    # while the graph stage runs: the node's NodeDraft (removed when the stage ends)


@dataclass(frozen=True)
class TensorSpec:
    """A network input: its name (the forward's argument), shape, dtype and, for integers, value range."""
    name: str
    shape: tuple
    dtype: str = "float32"
    value_range: tuple | None = None  # [low, high) for integer inputs (token ids, masks)


@dataclass(frozen=True)
class OutputRef:
    """A network output: the name the user gave it, and the node and port that produce it."""
    name: str
    node: str
    port: str


@dataclass(frozen=True)
class NodeDraft:
    """A node as the spec writes it, with its references resolved: what shape inference starts from."""
    path: str
    """Spec path, also the graph node id (`stage1.0.conv1`)."""
    op: str
    """Op name; `"input"` for a network input."""
    args: dict = field(default_factory=dict)
    """Constructor arguments as written, `${...}` evaluated (inferred sizes are added by inference)."""
    sources: tuple = ()
    """Ordered `(source node, port)` pairs feeding this node (its `in:`)."""
    slots: tuple | None = None
    """Slot names of a dict `in:` (`{x: a, memory: b}`), same order as `sources`; None otherwise."""
    file: str = ""
    """The file that wrote the node (a `use:`d file for nodes of an imported block)."""
    loc: tuple | None = None
    """(line, col) of the node in `file`."""
    arg_locs: dict = field(default_factory=dict)
    """Argument name (and `share`/`tie`/`init`) -> (line, col), for errors that point at one key."""
    block: str = ""
    """Innermost block instance path (`stage1.0`), `""` at top level."""
    block_type: str | None = None
    """Name of the block that node belongs to, None at top level."""
    share: str | None = None
    """Spec path whose module this node reuses."""
    tie: dict | None = None
    """Parameter name -> `node.path.param` it is tied to."""
    init: object = None
    """The node's own `init:` (initialiser name, mapping or list), applied when compiled."""
    trainable: bool = True
    """False freezes the node's parameters."""
    when: object = None
    """A `when:` that reads sizes (an `expr.Deferred`), decided by inference; None otherwise."""
    shape: tuple | None = None
    """Declared shape of a network input (None for ops)."""
    dtype: str | None = None
    """Declared dtype of a network input (None for ops)."""


@dataclass(frozen=True)
class NodeRecord:
    """A checked node of the graph: what compile, export, the trainer and the pictures read.

    Built only by `builder.graph.infer` (and copied with changed counts by `builder.graph.sharing`); stored as
    `graph.nodes[path]["record"]`, read with `record(graph, path)`.
    """
    path: str
    """Spec path, also the graph node id."""
    op: str
    """Op name; `"input"` for a network input."""
    args: dict
    """Resolved constructor arguments, inferred sizes included."""
    sources: tuple
    """Ordered `(source node, port)` pairs feeding this node."""
    slots: tuple | None
    """Slot names of a dict `in:`, same order as `sources`; None otherwise."""
    in_shapes: tuple
    """Shape of each source, in order; a shape is a tuple of sizes and dim names (opaque here)."""
    out_shapes: dict
    """Output port -> shape."""
    ports: tuple
    """Output port names, in order (`("out",)` for most ops)."""
    dtype: str
    """Output dtype name (`"float32"`, `"int64"`)."""
    param_count: int
    """Parameter elements this node owns (0 when it shares another node's module; tied ones not counted)."""
    trainable_param_count: int
    """The part of `param_count` the optimiser updates."""
    macs: int
    """Multiply-accumulates of one forward at the example sizes (B = 1, each dim's `example:`, else its
    minimum); builder.graph.macs counts at other sizes."""
    param_shapes: dict
    """Torch parameter name -> shape of the node's module (`{"weight": (16, 3, 3, 3), "bias": (16,)}`)."""
    block: str
    """Innermost block instance path (`stage1.0`), `""` at top level."""
    block_type: str | None
    """Name of the block the node belongs to, None at top level."""
    file: str
    """The file that wrote the node."""
    line: int | None
    """Line of the node in `file`."""
    col: int | None
    """Column of the node in `file`."""
    share: str | None
    """Spec path whose module this node reuses, or None."""
    tie: dict | None
    """Parameter name -> `node.param` that really holds the values (chains resolved), or None."""
    init: object
    """The node's own `init:`, or None."""
    trainable: bool
    """False when the node's parameters are frozen."""

    @property
    def out_shape(self) -> tuple:
        """Shape of the first output port."""
        return self.out_shapes[self.ports[0]]

    @property
    def source(self) -> str:
        """`file:line:col` of the node (just the file when it has no position)."""
        return f"{self.file}:{self.line}:{self.col}" if self.line is not None else self.file


def record(graph, node: str) -> NodeRecord:
    """The NodeRecord of graph node `node`."""
    return graph.nodes[node][RECORD_KEY]


def records(graph):
    """Every NodeRecord of the graph, in graph order (a topological order)."""
    return (d[RECORD_KEY] for _, d in graph.nodes(data=True))


@dataclass
class Network:
    """One network of a spec: its checked graph (node id -> NodeRecord), inputs and outputs."""
    name: str
    graph: object  # networkx.MultiDiGraph
    inputs: list   # [TensorSpec]
    outputs: list  # [OutputRef]

    @property
    def total_params(self) -> int:
        return sum(r.param_count for r in records(self.graph))

    @property
    def trainable_params(self) -> int:
        return sum(r.trainable_param_count for r in records(self.graph))


@dataclass(frozen=True)
class BuildInfo:
    """What a compiled module knows of the spec it came from: `module.build_info`."""
    spec_name: str
    """The spec's name."""
    network_name: str
    """The network's name (`"model"` for a single-network spec)."""
    inputs: tuple
    """TensorSpec of each forward argument, in order."""
    outputs: tuple
    """Output names, in the order forward returns them."""
    node_inits: dict
    """Spec path -> the node's own `init:` (the trainer's global init skips these)."""
    network: Network | None = None
    """The checked Network the module was compiled from: what is derived later (the key/value cache of
    builder.generation.kv_cache) reads its graph."""


def build_info(module) -> BuildInfo | None:
    """`module.build_info`, or None for a module not made by builder.build."""
    return getattr(module, "build_info", None)


def spec_inputs(module):
    """The network's input TensorSpecs of a module made by builder.build (None for another module)."""
    info = build_info(module)
    return info.inputs if info else None


def node_inits(module) -> dict:
    """The nodes' own `init:` rules of a module made by builder.build ({} for another module)."""
    info = build_info(module)
    return dict(info.node_inits) if info else {}


@dataclass
class BlockDef:
    """A block definition as written (`blocks:` or a `use:`d file), expanded by the graph stage."""
    name: str
    body: object  # LocDict
    file: str
    loc: tuple | None
