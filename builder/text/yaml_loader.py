"""Safe YAML loading that keeps source positions and refuses what PyYAML would silently accept.

Mappings load as `LocDict` and sequences as `LocList`: ordinary dict/list with the (line, col) of each
key or item, so every later error can point at the line the user wrote. Duplicate keys, custom tags and
alias bombs are errors, not surprises.
"""
from __future__ import annotations

import re

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from builder.core.errors import Diagnostic, SpecError

MAX_FILE_BYTES = 2_000_000
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 200_000


class LocDict(dict):
    """A dict that remembers where it and each of its keys were written (1-based line, col)."""

    loc: tuple[int, int] | None = None

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.locs: dict = {}
        self.loc = None

    def loc_of(self, key):
        return self.locs.get(key, self.loc)


class LocList(list):
    def __init__(self, *a):
        super().__init__(*a)
        self.locs: list = []
        self.loc = None

    def loc_of(self, index):
        return self.locs[index] if 0 <= index < len(self.locs) else self.loc


def to_plain(value):
    """LocDict/LocList -> plain dict/list, for data handed to later stages (and JSON)."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


def _pos(node):
    return (node.start_mark.line + 1, node.start_mark.column + 1)


# libyaml's C parser when present (10x faster on big specs); the constructors below are ours either way
_Base = getattr(yaml, "CSafeLoader", None) if getattr(yaml, "__with_libyaml__", False) else None


class _Loader(_Base or yaml.SafeLoader):
    pass


def _construct_mapping(loader, node, deep=True):
    loader.flatten_mapping(node)
    out = LocDict()
    out.loc = _pos(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, (list, dict)):
            raise SpecError(Diagnostic("mapping keys must be plain scalars", loader.name, *_pos(key_node)))
        if key in out:
            first = out.locs[key]
            raise SpecError(Diagnostic(f"duplicate key '{key}' (first written at line {first[0]})",
                                       loader.name, *_pos(key_node)))
        out[key] = loader.construct_object(value_node, deep=True)
        out.locs[key] = _pos(key_node)
    return out


def _construct_sequence(loader, node, deep=True):
    out = LocList(loader.construct_object(child, deep=True) for child in node.value)
    out.loc = _pos(node)
    out.locs = [_pos(child) for child in node.value]
    return out


# YAML 1.2's floats: `1e-3`, `3E-4`, `.5`, `-2.5e+3` are numbers as people write them (YAML 1.1, and so
# PyYAML, reads the first two as strings: `lr: 1e-3` would fail far from the spec). Checked before 1.1's.
FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"
                      r"|^[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9_]+)$")
_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in _Loader.yaml_implicit_resolvers.items()}
for _first in "-+.0123456789":
    _Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(0, ("tag:yaml.org,2002:float", FLOAT_12))

MAX_INT_DIGITS = 100  # an integer literal longer than this is refused (Python itself stops at 4300 digits)
_LEADING_ZERO = re.compile(r"^[-+]?0[0-9_]+$")


def _construct_int(loader, node):
    """YAML 1.1 reads `010` as 8 (octal); YAML 1.2 and Python refuse the leading zero, and so do we. An
    integer of absurd length is refused before Python converts it (bounded time)."""
    text = str(node.value)
    if _LEADING_ZERO.match(text):
        raise SpecError(Diagnostic(f"integer {text!r} has a leading zero (YAML 1.1 would read it as octal): "
                                   f"write {text.lstrip('+-0_') or '0'}, or quote it for text", loader.name,
                                   *_pos(node)))
    if len(text) > MAX_INT_DIGITS:
        raise SpecError(Diagnostic(f"integer of {len(text)} digits: too long (over {MAX_INT_DIGITS})",
                                   loader.name, *_pos(node)))
    return yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)


def _construct_float(loader, node):
    text = str(node.value)
    if len(text) > MAX_INT_DIGITS:
        raise SpecError(Diagnostic(f"number of {len(text)} characters: too long (over {MAX_INT_DIGITS})",
                                   loader.name, *_pos(node)))
    return yaml.constructor.SafeConstructor.construct_yaml_float(loader, node)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _check_size(node, name, max_nodes=MAX_EXPANDED_NODES):
    """Reject alias bombs and absurd nesting before anything is constructed (bounded time and memory)."""
    memo: dict[int, int] = {}

    def size(n, depth):
        if depth > MAX_DEPTH:
            raise SpecError(Diagnostic(f"nesting deeper than {MAX_DEPTH} levels", name, *_pos(n)))
        key = id(n)
        if key in memo:
            return memo[key]
        memo[key] = 1  # guards against recursive aliases
        if isinstance(n, MappingNode):
            total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in n.value)
        elif isinstance(n, SequenceNode):
            total = 1 + sum(size(c, depth + 1) for c in n.value)
        else:
            total = 1
        if total > max_nodes:
            raise SpecError(Diagnostic(
                f"the document expands to more than {max_nodes} YAML nodes (alias bomb?)",
                name, *_pos(n)))
        memo[key] = total
        return total

    size(node, 0)


_EXPR = re.compile(r"\$\{[^{}\n]*\}")
_OPEN, _PAD, _BASE = "\u2983", "\u2984", 0x4E00
_MAX_EXPRS = 20_000


def _protect_expressions(text: str, name: str):
    """Swap each `${...}` for a same-length placeholder that YAML reads as a plain scalar.

    YAML forbids `{` `}` `,` inside plain scalars of flow mappings, so `{out_channels: ${c}}` would not
    parse; the placeholder keeps every column where the user wrote it, so positions stay exact.
    """
    originals: list[str] = []

    def swap(m):
        if len(originals) >= _MAX_EXPRS:
            raise SpecError(Diagnostic(f"more than {_MAX_EXPRS} ${{...}} expressions", name))
        originals.append(m.group(0))
        return _OPEN + chr(_BASE + len(originals) - 1) + _PAD * (len(m.group(0)) - 2)

    return _EXPR.sub(swap, text), originals


def _restore(value, originals):
    if not originals:
        return value
    if isinstance(value, str):
        if _OPEN not in value:
            return value
        return re.sub(_OPEN + "(.)" + _PAD + "*", lambda m: originals[ord(m.group(1)) - _BASE], value)
    if isinstance(value, LocDict):
        items = [(_restore(k, originals), _restore(v, originals)) for k, v in value.items()]
        locs = {_restore(k, originals): loc for k, loc in value.locs.items()}
        value.clear()
        value.update(items)
        value.locs = locs
        return value
    if isinstance(value, LocList):
        value[:] = [_restore(v, originals) for v in value]
        return value
    return value


def _char_at(text: str, line: int, col: int) -> str:
    lines = text.split("\n")
    return lines[line][col:col + 1] if 0 <= line < len(lines) else ""


def load_scalar(text: str):
    """One value as `--set KEY=VALUE` gives it, read by the spec's own rules (1e-3 is a float); text that
    is not valid YAML stays text."""
    if not text.strip():
        return ""
    try:
        return to_plain(load_yaml(text, "--set"))
    except SpecError as e:
        if "leading zero" in str(e) or "too long" in str(e):
            raise
        return text


def load_yaml(text: str, name: str = "<spec>", max_bytes: int = MAX_FILE_BYTES,
              max_nodes: int = MAX_EXPANDED_NODES):
    """Parse YAML text safely; returns LocDict/LocList/scalars or raises SpecError with a position.
    The limits (size, expanded nodes; depth is MAX_DEPTH) are the spec's unless a caller reading a
    bigger kind of file (a run's resolved.yaml) raises them."""
    if len(text) > max_bytes or len(text.encode("utf-8", "replace")) > max_bytes:
        raise SpecError(Diagnostic(f"file is larger than {max_bytes // 1000} kB", name, 1, 1))
    if _OPEN in text:  # the placeholder mark of _protect_expressions: a literal one would restore wrongly
        at = text.index(_OPEN)
        line = text.count("\n", 0, at)
        raise SpecError(Diagnostic("the character U+2983 is reserved (it marks ${...} while parsing)", name,
                                   line + 1, at - (text.rfind("\n", 0, at) + 1) + 1))
    text, originals = _protect_expressions(text, name)
    loader = _Loader(text)
    loader.name = name
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node, name, max_nodes)
        return _restore(loader.construct_document(node), originals)
    except SpecError:
        raise
    except yaml.constructor.ConstructorError as e:
        mark = e.problem_mark or e.context_mark
        msg = (e.problem or "cannot construct value").strip()
        if "could not determine a constructor for the tag" in msg:
            tag = msg.split("tag", 1)[1].strip().strip("'").replace("tag:yaml.org,2002:", "!!")
            msg = f"tag {tag} is not allowed: specs are data and can never construct objects or run code"
        raise SpecError(Diagnostic(msg, name, mark.line + 1 if mark else None,
                                   mark.column + 1 if mark else None)) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        msg = (e.problem or e.context or "invalid YAML").strip()
        if e.context and e.problem:
            ctx = e.context.strip()
            if e.context_mark and e.problem_mark and e.context_mark.line != e.problem_mark.line:
                ctx += f" that starts at line {e.context_mark.line + 1}"
            msg += f" ({ctx})"
        if e.problem_mark and _char_at(text, e.problem_mark.line, e.problem_mark.column) == "\t":
            msg = "a tab character: YAML indents with spaces, never tabs"
        raise SpecError(Diagnostic(f"invalid YAML: {msg}", name, mark.line + 1 if mark else None,
                                   mark.column + 1 if mark else None)) from None
    except yaml.YAMLError as e:
        raise SpecError(Diagnostic(f"invalid YAML: {e}", name)) from None
    except RecursionError:
        raise SpecError(Diagnostic("YAML nested too deeply", name)) from None
    finally:
        loader.dispose()
