"""Load weights saved by other code into a built spec: rename keys, transpose, split, check everything.

A weight map (YAML, usually beside the spec: `specs/gpt2.hf-map.yaml`) says how the keys of a foreign
state_dict become the spec's parameter paths:

    rules:                                   # tried in order; the first rule whose `from` matches wins
      - {from: transformer.wte.weight, to: wte.weight}
      - {from: "transformer.h.{n}.ln_1.{p}", to: "h.{n}.ln_1.{p}"}
      - from: "transformer.h.{n}.attn.c_attn.weight"
        transpose: true                      # GPT-2's Conv1D stores [in, out]; Linear wants [out, in]
        split: {dim: 0, to: ["h.{n}.attn.q.weight", "h.{n}.attn.k.weight", "h.{n}.attn.v.weight"]}
      - {from: "resnet.encoder.stages.{s}.layers.{j}.layer.{k}.convolution.weight",
         to: "layer{s+1}.{j}.conv{k+1}.weight"}
    ignore: ["transformer.h.{n}.attn.bias"]  # source keys that are deliberately dropped (e.g. buffers)

Patterns: `{name}` matches one dotted segment (or part of one), `{name*}` any text, dots included
(possibly empty); `to` templates use the captured text, and arithmetic on a captured integer, applied left to
right (`{name+1}`, `{name-1}`, `{k//2}`, `{i*2+1}`, `{n%3}`), addresses a copy of a repeated block by its
index. A target naming a node that holds one tensor (a `param` node, an RMSNorm) means its `.weight`. A
split divides a tensor along `dim` into equal parts, or into `sizes`. `transpose: true` swaps dims 0 and 1
(`transpose: [a, b]` swaps others), `permute: [..]` reorders all dims and `reshape: [..]` (one `-1`
allowed) changes the shape; they apply in that order, before the split.

Every source key must be used or ignored, every entry of the module's state_dict must be filled (a
parameter tied to a filled one counts as filled) with exactly its shape; otherwise `WeightsError` lists
what is missing, unexpected (no rule matches), without a target (a rule matched but names a key the
spec lacks) and mis-shaped, all at once.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from builder.core.errors import UserError
from builder.weights.patterns import Pattern

_TARGET = re.compile(r"\{(\w+)\*?((?:(?:[-+*%]|//)\d+)*)\}")
_STEP = re.compile(r"([-+*%]|//)(\d+)")
_ARITH = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "//": lambda a, b: a // b,
          "%": lambda a, b: a % b}
MAX_LISTED = 25


class WeightsError(UserError):
    """Weights that do not fit the spec: `missing`, `unexpected` and `mis_shaped` say exactly where."""

    def __init__(self, missing=(), unexpected=(), mis_shaped=(), other=(), no_target=()):
        self.missing, self.unexpected = sorted(missing), sorted(unexpected)
        self.mis_shaped, self.other, self.no_target = list(mis_shaped), list(other), list(no_target)
        lines = []
        for title, items in (("missing (no source key fills them)", self.missing),
                             ("unexpected (no rule matches them)", self.unexpected),
                             ("no target (a rule matches, but the spec has no parameter or buffer of that name)",
                              self.no_target),
                             ("mis-shaped", self.mis_shaped), ("other problems", self.other)):
            if items:
                lines.append(f"  {title}: {len(items)}")
                lines += [f"    {x}" for x in items[:MAX_LISTED]]
                if len(items) > MAX_LISTED:
                    lines.append(f"    ... and {len(items) - MAX_LISTED} more")
        super().__init__("weights do not fit the spec:\n" + "\n".join(lines))


@dataclass
class Rule:
    source: str
    pattern: Pattern
    to: str | None = None
    split_to: list = field(default_factory=list)
    split_dim: int = 0
    split_sizes: list | None = None
    transpose: tuple | None = None
    permute: list | None = None
    reshape: list | None = None


def _fill(template: str, groups: dict, rule_source: str) -> str:
    def sub(m):
        name, shift = m.group(1), m.group(2)
        if name not in groups:
            raise UserError(f"weight map: '{template}' uses {{{name}}}, which '{rule_source}' does not capture")
        value = groups[name]
        if shift:
            if not value.isdigit() or len(value) > 18:
                raise UserError(f"weight map: {{{name}{shift}}} needs an integer, '{rule_source}' captured '{value}'")
            number = int(value)
            for op, operand in _STEP.findall(shift):  # left to right: {k//2}, {i*3+1}, {s-1}
                if op in ("//", "%") and int(operand) == 0:
                    raise UserError(f"weight map: {{{name}{shift}}} divides by zero")
                number = _ARITH[op](number, int(operand))
            value = str(number)
        return value
    return _TARGET.sub(sub, template)


def parse_map(mapping) -> tuple[list[Rule], list[Pattern]]:
    """A weight map (dict, YAML path or None for 'same names') -> (rules, ignore patterns)."""
    if mapping is None:
        mapping = {"rules": [{"from": "{key*}", "to": "{key}"}]}
    if isinstance(mapping, (str, Path)):
        mapping = read_map(mapping)
    if not isinstance(mapping, dict):
        raise UserError("weight map: expected a mapping with `rules:` (and optionally `ignore:`)")
    unknown = set(mapping) - {"rules", "ignore", "description"}
    if unknown:
        raise UserError(f"weight map: unknown key(s) {sorted(unknown)}; known: rules, ignore, description")
    if not isinstance(mapping.get("rules") or [], list):
        raise UserError("weight map: rules must be a list of {from, to} rules")
    rules = []
    for i, raw in enumerate(mapping.get("rules") or []):
        where = f"weight map: rules[{i}]"
        if not isinstance(raw, dict) or "from" not in raw:
            raise UserError(f"{where}: each rule needs `from:` and `to:` or `split:`")
        bad = set(raw) - {"from", "to", "split", "transpose", "permute", "reshape"}
        if bad:
            raise UserError(f"{where}: unknown key(s) {sorted(bad)}; known: from, to, split, transpose, "
                            "permute, reshape")
        if ("to" in raw) == ("split" in raw):
            raise UserError(f"{where}: give exactly one of `to:` or `split:`")
        rule = Rule(str(raw["from"]), Pattern(str(raw["from"])))
        if "to" in raw:
            rule.to = str(raw["to"])
        else:
            split = raw["split"]
            if not isinstance(split, dict) or not isinstance(split.get("to"), list) or not split["to"]:
                raise UserError(f"{where}: split needs `to: [target, ...]` (and optionally dim, sizes)")
            rule.split_to = [str(t) for t in split["to"]]
            rule.split_dim = _int(split.get("dim", 0), f"{where}: split.dim")
            sizes = split.get("sizes")
            if sizes is not None and not isinstance(sizes, list):
                raise UserError(f"{where}: split.sizes must be a list of integers, got {sizes!r}")
            rule.split_sizes = [_int(s, f"{where}: split.sizes") for s in sizes] if sizes is not None else None
            if rule.split_sizes is not None and len(rule.split_sizes) != len(rule.split_to):
                raise UserError(f"{where}: split has {len(rule.split_to)} targets but {len(rule.split_sizes)} sizes")
        t = raw.get("transpose", False)
        if t is True:
            rule.transpose = (0, 1)
        elif isinstance(t, list) and len(t) == 2:
            rule.transpose = (_int(t[0], f"{where}: transpose"), _int(t[1], f"{where}: transpose"))
        elif t not in (False, None):
            raise UserError(f"{where}: transpose must be true or a pair of dims, got {t!r}")
        rule.permute = _int_list(raw, "permute", where)
        rule.reshape = _int_list(raw, "reshape", where)
        if rule.reshape is not None and (rule.reshape.count(-1) > 1 or any(d < -1 or d == 0 for d in rule.reshape)):
            raise UserError(f"{where}: reshape entries must be positive sizes and at most one -1, got {rule.reshape}")
        if rule.permute is not None and sorted(rule.permute) != list(range(len(rule.permute))):
            raise UserError(f"{where}: permute must list every dim once, got {rule.permute}")
        captured = set(rule.pattern.names)
        for template in ([rule.to] if rule.to is not None else rule.split_to):
            for m in _TARGET.finditer(template):
                if m.group(1) not in captured:
                    raise UserError(f"{where}: '{template}' uses {{{m.group(1)}}}, which '{rule.source}' "
                                    "does not capture")
        rules.append(rule)
    ignore = mapping.get("ignore") or []
    if not isinstance(ignore, list):
        raise UserError(f"weight map: ignore must be a list of patterns, got {type(ignore).__name__}")
    return rules, [Pattern(str(p)) for p in ignore]


def _int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 64:
        raise UserError(f"{where} must be a (small) integer, got {value!r}")
    return value


def _int_list(raw: dict, key: str, where: str) -> list | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                                          for v in value):
        raise UserError(f"{where}: {key} must be a list of integers, got {value!r}")
    return list(value)


def read_map(path) -> dict:
    """A weight map file, read like every untrusted file (builder.text.readers: size, depth, aliases)."""
    from builder.text.readers import read_yaml_file
    return read_yaml_file(Path(path), "weight map") or {}


def _apply(rule: Rule, key: str, tensor: torch.Tensor, groups: dict) -> list[tuple[str, torch.Tensor]]:
    t = tensor
    if rule.transpose:
        if t.dim() < 2:
            raise ValueError(f"cannot transpose a {t.dim()}-D tensor {list(t.shape)}")
        t = t.transpose(*rule.transpose)
    if rule.permute is not None:
        if t.dim() != len(rule.permute):
            raise ValueError(f"cannot permute a {t.dim()}-D tensor {list(t.shape)} by {rule.permute}")
        t = t.permute(*rule.permute)
    if rule.reshape is not None:
        try:
            t = t.reshape(rule.reshape)
        except RuntimeError:
            raise ValueError(f"cannot reshape {list(t.shape)} to {rule.reshape}") from None
    if rule.to is not None:
        return [(_fill(rule.to, groups, rule.source), t.contiguous())]
    n = len(rule.split_to)
    size = t.shape[rule.split_dim]
    sizes = rule.split_sizes
    if sizes is None:
        if size % n:
            raise ValueError(f"cannot split dim {rule.split_dim} of {list(t.shape)} into {n} equal parts")
        sizes = [size // n] * n
    elif sum(sizes) != size:
        raise ValueError(f"split sizes {sizes} add up to {sum(sizes)}, "
                         f"dim {rule.split_dim} of {list(t.shape)} is {size}")
    parts = torch.split(t, sizes, dim=rule.split_dim)
    return [(_fill(target, groups, rule.source), p.contiguous()) for target, p in zip(rule.split_to, parts)]


def _target_info(module: torch.nn.Module):
    """state_dict key -> (shape, dtype), and key -> the first key holding the same tensor (ties)."""
    shapes, first_of, tied = {}, {}, {}
    for key, value in module.state_dict(keep_vars=True).items():
        shapes[key] = (tuple(value.shape), value.dtype)
        ident = id(value)
        if ident in first_of:
            tied[key] = first_of[ident]
        else:
            first_of[ident] = key
    return shapes, tied


def convert_state_dict(source: dict, mapping, module: torch.nn.Module) -> dict:
    """The source state_dict renamed/transposed/split by `mapping` into `module`'s keys, fully checked.

    `module` may live on the meta device: only its state_dict's key names, shapes and dtypes are read.
    Returns a complete state_dict for `module` (tied entries included) or raises WeightsError.
    """
    rules, ignore = parse_map(mapping)
    shapes, tied = _target_info(module)
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unexpected, no_target, mis_shaped, other = [], [], [], []
    wrong: set[str] = set()  # targets given with the wrong shape: reported as mis-shaped, not missing
    for key, tensor in source.items():
        if not isinstance(tensor, torch.Tensor):
            other.append(f"{key}: not a tensor ({type(tensor).__name__})")
            continue
        for rule in rules:
            m = rule.pattern.match(key)
            if m is not None:
                break
        else:
            if not any(p.match(key) is not None for p in ignore):
                unexpected.append(key)
            continue
        try:
            produced = _apply(rule, key, tensor, m)
        except ValueError as e:
            other.append(f"{key}: {e}")
            continue
        for target, value in produced:
            if target not in shapes and f"{target}.weight" in shapes and not any(
                    k.startswith(target + ".") and k != f"{target}.weight" for k in shapes):
                target += ".weight"   # a node holding one tensor (`param`, RMSNorm) is addressed by its path
            if target not in shapes:
                no_target.append(key if target == key else f"{key} -> {target}")
                continue
            if target in out:
                other.append(f"{target} is filled twice: from {origin[target]} and from {key}")
                continue
            want, dtype = shapes[target]
            if tuple(value.shape) != want:
                via = f" -> {target}" if target != key else ""
                mis_shaped.append(f"{key}{via}: source {list(value.shape)}, spec wants {list(want)}")
                wrong.add(target)
                continue
            out[target] = value.to(dtype) if value.is_floating_point() and dtype.is_floating_point else value
            origin[target] = key
    for key, first in tied.items():
        if key in out and first in out and not (out[key].is_meta or out[first].is_meta) \
                and not torch.equal(out[key], out[first]):
            other.append(f"{key} is tied to {first} in the spec, but the source gives them different values "
                         f"(from {origin[key]} and {origin[first]}); ignore one of them in the map")
    missing = []
    for key in shapes:
        if key in out or key in wrong:
            continue
        partner = tied.get(key)
        if partner is None:  # maybe this key is the first of a tie whose other name was filled
            partner = next((k for k, p in tied.items() if p == key and k in out), None)
        if partner is not None and partner in out:
            out[key] = out[partner]
            continue
        missing.append(key)
    if missing or unexpected or mis_shaped or other or no_target:
        raise WeightsError(missing, unexpected, mis_shaped, other, no_target)
    return {k: out[k] for k in shapes}


def load_weights(module: torch.nn.Module, state_dict, mapping=None) -> torch.nn.Module:
    """Load a foreign state_dict (or a file: .pt/.pth/.bin or .safetensors) into a built spec module.

    `mapping` is a weight map (dict or YAML path; None: the keys already are the spec's paths). Every
    source key must be consumed and every parameter and buffer filled with its exact shape, else
    WeightsError. Returns the module.
    """
    if isinstance(state_dict, (str, Path)):
        state_dict = read_state_dict(state_dict)
    converted = convert_state_dict(state_dict, mapping, module)
    module.load_state_dict(converted, strict=True)
    return module


def read_state_dict(path) -> dict:
    """A flat {key: tensor} from a torch file (loaded with weights_only=True) or a .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise UserError(f"{path}: reading .safetensors needs the `safetensors` package "
                            "(pip install safetensors)") from None
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as e:
            raise UserError(f"{path}: not a readable safetensors file: {e}") from None
    from builder.training.checkpoint import load
    return _unwrap(load(path), path)


def _unwrap(data, path):
    if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return dict(data)
    if isinstance(data, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = data.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
    keys = f" with keys {sorted(map(str, data))[:8]}" if isinstance(data, dict) else ""
    raise UserError(f"{path}: expected a state_dict (a mapping of names to tensors), "
                    f"got {type(data).__name__}{keys}")


def save_state_dict(state_dict: dict, out_path) -> Path:
    """Write the converted weights the way checkpoints are written (checkpoint.save_atomic): never a
    half-written file, a full disk is a one-line error."""
    from builder.training.checkpoint import save_atomic
    out = Path(out_path)
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"{out}: folder {folder} does not exist")
    save_atomic(state_dict, out)
    return out
