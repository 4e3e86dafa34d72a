"""Mutations of valid specs for fuzzing (issue 7): drop keys, swap types, random strings, huge and negative
numbers, broken references, and raw-text damage.

One engine serves two drivers: the hypothesis tests (`tests/test_fuzz_specs.py`, choices drawn by
hypothesis so failures shrink) and the long run (`benchmarks/fuzz.py`, choices from `random.Random` so it
can count failures instead of stopping at the first). A driver hands in a `chooser` with two methods:
`integer(lo, hi)` (inclusive) and `choice(sequence)`.

The property under test: `builder.load(text)` either returns a checked spec or raises SpecError/UserError;
any other exception is a bug.
"""
from __future__ import annotations

import copy
import math
import os
import random
from contextlib import contextmanager
from pathlib import Path

import yaml

import builder
from builder.core.errors import SpecError, UserError
from builder.text.yaml_loader import load_yaml
from builder.text.yaml_loader import to_plain as _plain

ROOT = Path(__file__).resolve().parent.parent
SEED_DIRS = (ROOT / "specs", ROOT / "specs" / "examples", ROOT / "tests" / "fuzz_seeds")
MAX_SEED_NODES = 70  # mutating GPT-2-size specs costs 20+ ms a case; small specs exercise the same rules

NUMBERS = (0, 1, -1, 2, 3, -7, 0.5, -0.5, 1e-300, 1e300, 10**6, 10**12, 2**31, 2**63, -2**63, 10**30,
           float("nan"), float("inf"), -float("inf"))
STRINGS = ("", " ", "x", "B", "T", "-1", "1e-5", "Linear", "ReLU", "Conv2d", "add", "nope", "a.b", "lstm.q",
           "x.out", "stage1.0.conv1", "${", "}", "${}", "${1/0}", "${10**10**10}", "${'a' * 10**9}",
           "${__import__('os').system('true')}", "${x}", "${width * 2}", "${i}", "${i == 0}", "${[1, 2]}",
           "${max()}", "${int('x')}", "${-2**63}", "${1e308 * 10}", "${2 ** -2000}", "${(1,) * 5}", "\x00",
           "\u00e9\u00e8", "\U0001F600", "!!python/object", "*alias", "&anchor", "{", "[", ":", "- ", "#", "'",
           '"', "\\", "\t", "float32", "int64", "bool", "float23", "out", "output", "h", "c", "weight",
           "wte.weight", "../../../etc/passwd", "/dev/zero", "nul.yaml")
KEYS = ("op", "block", "in", "repeat", "share", "tie", "init", "trainable", "when", "doc", "shape", "dtype",
        "range", "params", "inputs", "nodes", "outputs", "networks", "use", "train", "export", "spec", "name",
        "blocks", "out_features", "kernel_size", "stride", "padding", "dim", "num_heads", "hidden_size",
        "bias", "groups", "p", "x", "head", "", "1", "a.b", "__class__")


class RandomChooser:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def choice(self, seq):
        return seq[self.rng.randrange(len(seq))]


class HypothesisChooser:
    def __init__(self, data):
        from hypothesis import strategies as st
        self.data, self.st = data, st

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))

    def choice(self, seq):
        return self.data.draw(self.st.sampled_from(list(seq)))


# ---- seeds ---------------------------------------------------------------------------------------

def seed_specs() -> list[tuple[Path, str, object]]:
    """(path, text, plain document) of every small valid spec we can find: the zoo, the examples, ours."""
    out = []
    for folder in SEED_DIRS:
        for path in sorted(folder.glob("*.yaml")):
            if path.name.endswith("map.yaml"):
                continue
            text = path.read_text(encoding="utf-8")
            try:
                with in_folder(path.parent):
                    spec = builder.load(text)
            except Exception:
                continue  # a zoo spec being written right now; not a seed
            nodes = sum(n.graph.number_of_nodes() for n in spec.networks.values())
            if nodes <= MAX_SEED_NODES:
                out.append((path, text, _plain(load_yaml(text, path.name))))
    return out


@contextmanager
def in_folder(folder: Path):
    """`use:` paths of a spec given as text resolve against the working directory."""
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


# ---- values --------------------------------------------------------------------------------------

def names_in(doc) -> list[str]:
    """Node, input and block names of a document: material for broken and crossed references."""
    out = []

    def walk(v, depth=0):
        if isinstance(v, dict) and depth < 12:
            for k, x in v.items():
                if isinstance(k, str):
                    out.append(k)
                walk(x, depth + 1)
        elif isinstance(v, list) and depth < 12:
            for x in v:
                walk(x, depth + 1)
    walk(doc)
    return sorted(set(out)) or ["x"]


def random_value(ch, names, depth=0):
    kind = ch.integer(0, 9 if depth < 2 else 5)
    if kind == 0:
        return ch.choice(NUMBERS)
    if kind == 1:
        return ch.integer(-2**70, 2**70) if ch.integer(0, 1) else ch.integer(-20, 300)
    if kind == 2:
        return ch.choice(STRINGS)
    if kind == 3:
        name = ch.choice(names)
        return name if ch.integer(0, 1) else f"{name}.{ch.choice(('out', 'output', 'h', 'c', 'q', '0', 'weight'))}"
    if kind == 4:
        return ch.choice((True, False, None))
    if kind == 5:
        return "${" + ch.choice(names + ["i", "1", "2**64", "1/0", "-1"]) + ch.choice(
            ("", " * 2", " // 0", " + 'a'", " if i else 0", " ** 99", ".x", "[0]", "()")) + "}"
    if kind in (6, 7):
        return [random_value(ch, names, depth + 1) for _ in range(ch.integer(0, 4))]
    return {ch.choice(KEYS + tuple(names[:20])): random_value(ch, names, depth + 1) for _ in range(ch.integer(0, 3))}


def swap_type(value, ch):
    """The same content in the wrong kind of container or scalar."""
    if isinstance(value, bool):
        return ch.choice((int(value), str(value).lower(), [value]))
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return ch.choice((str(value), float(value) + 0.5, [value], {"v": value}, -value, value * 10**9, bool(value)))
    if isinstance(value, str):
        return ch.choice(([value], {value: value}, len(value), value + "." + value, value.upper(), None))
    if isinstance(value, list):
        return ch.choice(({str(i): v for i, v in enumerate(value)}, value[:1] and value[0], value * 3, value[::-1], ""))
    if isinstance(value, dict):
        return ch.choice((list(value.values()), list(value), str(value), next(iter(value.values()), None)))
    return ch.choice(("", 0, []))


# ---- tree mutations --------------------------------------------------------------------------------

def locations(doc):
    """Every (container, key) pair of the document, breadth first."""
    out, queue = [], [doc]
    while queue and len(out) < 5000:
        v = queue.pop(0)
        if isinstance(v, dict):
            for k in list(v):
                out.append((v, k))
                queue.append(v[k])
        elif isinstance(v, list):
            for i in range(len(v)):
                out.append((v, i))
                queue.append(v[i])
    return out


OPS = ("drop", "replace", "swap_type", "reference", "number", "rename_key", "insert_key", "duplicate_entry",
       "move_entry", "swap_op", "swap_op", "graft")


def op_names() -> list[str]:
    from builder import ops
    return ops.names()


def node_entries(doc) -> list[dict]:
    """Every mapping with an `op:` key: the nodes of all scopes."""
    return [v for v in (parent[key] for parent, key in locations(doc)) if isinstance(v, dict) and "op" in v]


def mutate_tree(doc, ch, n_mutations: int, donors=()):
    """Apply n mutations in place; `donors` are other documents whose nodes may be grafted in."""
    names = names_in(doc)
    applied = []
    for _ in range(n_mutations):
        locs = locations(doc)
        if not locs:
            break
        parent, key = ch.choice(locs)
        op = ch.choice(OPS)
        applied.append(f"{op} {key!r}")
        value = parent[key]
        if op == "drop":
            del parent[key]
        elif op == "replace":
            parent[key] = random_value(ch, names)
        elif op == "swap_type":
            parent[key] = swap_type(value, ch)
        elif op == "reference":
            parent[key] = random_value(ch, names) if not names else ch.choice(names) + ch.choice(
                ("", ".out", ".h", ".q", ".0", "x"))
        elif op == "number":
            parent[key] = ch.choice((0, -1, -(abs(value) if isinstance(value, int) else 3), 10**12, 2**63,
                                     10**6, 1.5, -0.0, ch.integer(-10**4, 10**4)))
        elif op == "rename_key" and isinstance(parent, dict):
            new = ch.choice(KEYS + tuple(names))
            items = [(new if k == key else k, v) for k, v in parent.items() if k != new or k == key]
            parent.clear()
            parent.update(items)
        elif op == "insert_key" and isinstance(value, dict):
            value[ch.choice(KEYS + tuple(names))] = random_value(ch, names)
        elif op == "duplicate_entry" and isinstance(parent, dict):
            parent[f"{key}_copy" if isinstance(key, str) else ch.choice(names)] = value
        elif op == "duplicate_entry":
            parent.append(value)
        elif op == "swap_op":  # another op with this node's arguments: every shape rule meets odd inputs
            nodes = node_entries(doc)
            if nodes:
                ch.choice(nodes)["op"] = ch.choice(op_names())
        elif op == "graft" and isinstance(parent, dict):  # a node of another spec lands here
            donor_nodes = [n for d in donors for n in node_entries(d)]
            if donor_nodes:
                parent[f"g{ch.integer(0, 99)}"] = copy.deepcopy(ch.choice(donor_nodes))
        elif op == "move_entry" and isinstance(parent, dict):
            del parent[key]
            parent[key] = value  # the node moves to the end: `in:` defaults shift
        else:
            parent[key] = random_value(ch, names)
    return doc, applied


def dump(doc) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=200)


# ---- text mutations ------------------------------------------------------------------------------

TEXT_OPS = ("delete", "insert", "replace_number", "duplicate_line", "swap_lines", "indent", "truncate")


def mutate_text(text: str, ch, n_mutations: int) -> tuple[str, list]:
    applied = []
    for _ in range(n_mutations):
        op = ch.choice(TEXT_OPS)
        applied.append(op)
        lines = text.split("\n")
        if op == "delete" and text:
            a = ch.integer(0, len(text) - 1)
            text = text[:a] + text[a + ch.integer(1, 12):]
        elif op == "insert":
            a = ch.integer(0, len(text))
            text = text[:a] + str(ch.choice(STRINGS + tuple(str(n) for n in NUMBERS))) + text[a:]
        elif op == "replace_number":
            digits = [i for i, c in enumerate(text) if c.isdigit()]
            if digits:
                a = ch.choice(digits)
                text = text[:a] + str(ch.choice(("0", "-1", "99999999999", "1e400", "0.5", "00", "-0"))) + text[a + 1:]
        elif op == "duplicate_line" and lines:
            i = ch.integer(0, len(lines) - 1)
            lines.insert(i, lines[i])
            text = "\n".join(lines)
        elif op == "swap_lines" and len(lines) > 1:
            i, j = ch.integer(0, len(lines) - 1), ch.integer(0, len(lines) - 1)
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif op == "indent" and lines:
            i = ch.integer(0, len(lines) - 1)
            lines[i] = ch.choice(("", " ", "  ", "    ", "\t")) + lines[i].lstrip(" ")
            text = "\n".join(lines)
        elif op == "truncate" and text:
            text = text[:ch.integer(0, len(text))]
    return text, applied


# ---- the property ----------------------------------------------------------------------------------

class FuzzFailure(AssertionError):
    pass


def check_outcome(text: str, folder: Path, overrides: dict | None = None):
    """Load `text`; return "ok" or "error". Raise FuzzFailure for any other outcome."""
    try:
        with in_folder(folder):
            spec = builder.load(text, overrides=overrides)
    except SpecError as e:
        if not e.diagnostics:
            raise FuzzFailure("SpecError without diagnostics") from e
        n_lines = text.count("\n") + 2
        for d in e.diagnostics:
            line = str(d)
            if ": error: " not in line or not d.message:
                raise FuzzFailure(f"malformed diagnostic {line!r}") from e
            if d.line is not None and d.file == "<spec>" and not 1 <= d.line <= n_lines:
                raise FuzzFailure(f"diagnostic points past the text: {line!r}") from e
        return "error"
    except UserError as e:
        if not str(e):
            raise FuzzFailure("UserError without a message") from e
        return "error"
    except Exception as e:
        raise FuzzFailure(f"{type(e).__name__}: {e}") from e
    try:
        check_valid(spec)
    except Exception as e:
        raise FuzzFailure(f"accepted spec is not a valid graph: {type(e).__name__}: {e}") from e
    return "ok"


def check_valid(spec):
    import networkx as nx
    from builder.spec.summary import summarize
    from builder.core.types import record, records
    for net in spec.networks.values():
        g = net.graph
        assert nx.is_directed_acyclic_graph(g)
        for rec in records(g):
            assert rec.out_shape is not None, rec.path
            assert isinstance(rec.param_count, int) and rec.param_count >= 0, rec.path
        for out in net.outputs:
            assert out.node in g and out.port in record(g, out.node).out_shapes
    summarize(spec)


def run_forward(text: str, folder: Path, max_params: int = 2_000_000):
    """Compile every network of an accepted spec and run it on a random batch (symbolic dims = 2)."""
    import torch
    with in_folder(folder):
        spec = builder.load(text)
    for name in spec.networks:
        net = spec.network(name)
        if net.total_params > max_params:
            continue
        inputs = []
        for t in net.inputs:
            shape = [2 if isinstance(d, str) else d for d in t.shape]
            if any(d > 4096 for d in shape) or len(shape) > 6 or math.prod(shape) > 2**20:
                return
            if t.dtype.startswith(("int", "bool")):
                high = t.value_range[1] if t.value_range else 2
                x = torch.randint(0, max(int(high), 1), shape)
                inputs.append(x.bool() if t.dtype == "bool" else x.to(getattr(torch, t.dtype)))
            else:
                inputs.append(torch.randn(shape, dtype=getattr(torch, t.dtype)))
        from builder.shapes import rules as S
        sizes = {}
        from builder.core.types import records
        biggest = max(math.prod(S.concrete(shape, sizes, 2)) for rec in records(net.graph)
                      for shape in rec.out_shapes.values())
        on_meta = builder.build(spec, network=name, device="meta")
        if biggest > 2**22 or sum(b.numel() for b in on_meta.buffers()) > 2**22:
            continue  # legal but too big to run here (huge padding, a long positional table)
        module = builder.build(spec, network=name)
        with torch.no_grad():
            module.eval()(*inputs)


def check_runs(text: str, folder: Path, max_params: int = 2_000_000):
    """An accepted spec must also compile and run; raise FuzzFailure when it does not."""
    try:
        run_forward(text, folder, max_params)
    except IndexError as e:
        if "out of range" not in str(e):
            raise FuzzFailure(f"accepted spec fails to run: IndexError: {str(e)[:300]}") from e
        # an index into a symbolic dim (T) can only be checked at run time (T=2 here)
    except Exception as e:
        raise FuzzFailure(f"accepted spec fails to run: {type(e).__name__}: {str(e)[:300]}") from e
