"""A JSON Schema of the spec language, generated from the op registry, for editor completion.

Editors that read `# yaml-language-server: $schema=...` then complete op names and each op's
arguments and flag unknown keys. The builder's own checks stay the authority (shapes, references).
"""
from __future__ import annotations

from builder import ops as ops_pkg
from builder.spec.data_schema import data_schema
from builder.spec.reader import NAME_RULE, TOP_KEYS
from builder.sweep.space import sweep_schema
from builder.core.types import BLOCK_KEYS, DTYPES, INPUT_KEYS, NODE_KEYS

_EXPR = {"type": "string", "pattern": r"\$\{.*\}"}
_SCALAR = {"anyOf": [{"type": ["number", "boolean", "string", "null"]}, {"type": "array"}, {"type": "object"}]}
_REF = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}},
                  {"type": "object", "additionalProperties": {"type": "string"}}]}


_TERM = {"type": "object", "required": ["type"], "properties": {
    "type": {"type": "string", "description": "a loss name (mse, bce, cross_entropy, ...) or kl_normal"},
    "output": {"type": "string", "description": "the network output the loss reads (a name of `outputs:`)"},
    "target": {"type": "string", "description": "a spec input as the target (default: the data's target)"},
    "mu": {"type": "string", "description": "kl_normal: the output holding the mean"},
    "logvar": {"type": "string", "description": "kl_normal: the output holding the log-variance"},
    "weight": {"anyOf": [{"type": "number"}, _EXPR], "description": "the term's weight in the sum (default 1)"}}}
_LOSS = {"anyOf": [{"type": "string"}, {"type": "object"}, {"type": "array", "items": _TERM}],
         "description": "a loss name, {type: name, ...options}, or a list of terms over named outputs and inputs"}


def _node_schema() -> dict:
    common = {
        "in": {**_REF, "description": "input node(s): a name, a list, `node.port`, or {slot: name}"},
        "repeat": {"anyOf": [{"type": "integer", "minimum": 1}, _EXPR],
                   "description": "chain N copies of a block: each copy's outputs feed the next copy's first "
                                  "inputs by position; `stack.K.port` names copy K's output"},
        "share": {"type": "string", "description": "reuse the module of another node (spec path); on a block "
                  "instance, every module of another instance (its path)"},
        "tie": {"type": "object", "additionalProperties": {"type": "string"},
                "description": "tie a parameter to another node's parameter, e.g. {weight: wte.weight}"},
        "init": {"description": "initialiser for this node's parameters"},
        "trainable": {"anyOf": [{"type": "boolean"}, _EXPR]},
        "when": {"anyOf": [{"type": "boolean"}, _EXPR],
                 "description": "skip this node (pass its first input through) when false"},
        "doc": {"type": "string"},
    }
    op_names = sorted(ops_pkg.names())
    branches = []
    for name in op_names:
        op = ops_pkg.get(name)
        props = {k: op.arg_schema.get(k) or {**_SCALAR, "description": "inferred from the input" if k in op.inferred
                                              else name + " argument"} for k in op.allowed_args()}
        branches.append({
            "if": {"properties": {"op": {"const": name}}, "required": ["op"]},
            "then": {"properties": {**common, "op": {"const": name}, **props},
                     "required": ["op", *op.required], "additionalProperties": False,
                     "description": op.summary()},
        })
    return {
        "type": "object",
        "properties": {"op": {"enum": op_names}, "block": {"type": "string"}, **common},
        "oneOf": [{"required": ["op"]}, {"required": ["block"]}],
        "allOf": branches,
    }


_SIZE = {"anyOf": [{"type": "integer", "minimum": 1}, _EXPR]}
_DIMS = {"type": "object", "description": "declared symbolic dims: sizes they may take and an example",
         "additionalProperties": {"type": "object", "additionalProperties": False, "properties": {
             "min": {**_SIZE, "description": "smallest size (default: what the network needs, at least 1)"},
             "max": {**_SIZE, "description": "largest size (default: unbounded)"},
             "multiple_of": {**_SIZE, "description": "sizes are multiples of this (proves U-Net skips equal)"},
             "example": {**_SIZE, "description": "size for MAC counts and export examples (default: min)"}}}}
_EXPORT = {"type": "object", "additionalProperties": False, "properties": {
    "dynamic": {"type": "array", "items": {"type": "string"},
                "description": "input dims kept dynamic in ONNX (default: every symbolic dim)"},
    "sizes": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1},
              "description": "example size per dim for the export (default: dims example, else 2/32/8)"},
    "opset": {"type": "integer", "description": "ONNX opset (default: the exporter's)"}}}


def spec_schema() -> dict:
    node = {"$ref": "#/$defs/node"}
    nodes = {"type": "object", "additionalProperties": node, "minProperties": 1}
    inputs = {"type": "object", "additionalProperties": {
        "type": "object", "required": ["shape"], "additionalProperties": False,
        "properties": {"shape": {"type": "array", "items": {"type": ["integer", "string"]}},
                       "dtype": {"enum": list(DTYPES)}, "range": {"type": "array"}, "doc": {"type": "string"}}}}
    assert set(INPUT_KEYS) == {"shape", "dtype", "range", "doc"}
    outputs = {"anyOf": [{"type": "array", "items": {"type": "string"}},
                         {"type": "object", "additionalProperties": {"type": "string"}}]}
    network = {"type": "object", "required": ["inputs", "nodes"], "additionalProperties": False,
               "properties": {"inputs": inputs, "nodes": nodes, "outputs": outputs, "description": {"type": "string"}}}
    block = {"type": "object", "required": ["nodes"], "additionalProperties": False,
             "properties": {"params": {"type": "object"}, "inputs": {"type": "array", "items": {"type": "string"}},
                            "nodes": nodes, "outputs": outputs, "description": {"type": "string"}}}
    assert set(BLOCK_KEYS) == set(block["properties"]) and "op" in NODE_KEYS
    props = {
        "spec": {"const": 1}, "name": {"type": "string", "pattern": NAME_RULE.pattern, "not": {"enum": [".", ".."]}}, "description": {"type": "string"},
        "params": {"type": "object"}, "inputs": inputs, "blocks": {"type": "object", "additionalProperties": block},
        "nodes": nodes, "outputs": outputs, "networks": {"type": "object", "additionalProperties": network},
        "use": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "train": {"type": "object", "properties": {"loss": _LOSS, "data": data_schema()}}, "export": _EXPORT, "dims": _DIMS,
        "labels": {"type": "array", "description": "class names in class-id order; must equal the data's classes when it names them"},
        "sweep": sweep_schema(),
    }
    assert set(props) == set(TOP_KEYS)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://nn-spec-builder/spec.schema.json",
        "title": "nn-spec-builder spec",
        "type": "object",
        "properties": props,
        "additionalProperties": False,
        "$defs": {"node": _node_schema()},
    }
