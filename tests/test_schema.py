"""`build schema`: the JSON Schema accepts the zoo and rejects misspelt keys, so editors can help."""
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from builder.spec.schema import spec_schema
from builder.text.yaml_loader import load_yaml

SPECS = sorted(p for p in Path("specs").rglob("*.yaml") if not p.name.endswith("-map.yaml")
               and "map" not in p.stem.split(".")[-1])


def _doc(path):
    return json.loads(json.dumps(load_yaml(Path(path).read_text(), str(path))))


def test_schema_command_prints_valid_json_schema():
    out = subprocess.run([sys.executable, "-m", "builder.commands.cli", "schema"], capture_output=True, text=True, check=True)
    schema = json.loads(out.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "Linear" in schema["$defs"]["node"]["properties"]["op"]["enum"]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p))
def test_zoo_specs_validate(path):
    jsonschema.validate(_doc(path), spec_schema())


def test_misspelt_argument_and_unknown_op_are_rejected():
    schema = spec_schema()
    doc = {"spec": 1, "inputs": {"x": {"shape": ["B", 4]}},
           "nodes": {"fc": {"op": "Linear", "out_feature": 3}}}
    with pytest.raises(jsonschema.ValidationError, match="out_feature"):
        jsonschema.validate(doc, schema)
    doc["nodes"]["fc"] = {"op": "Linaer", "out_features": 3}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
    doc["nodes"]["fc"] = {"op": "Linear", "out_features": 3}
    jsonschema.validate(doc, schema)


def test_attention_rope_option_has_its_own_keys():
    schema = spec_schema()
    node = {"op": "attention", "heads": 2, "kv_heads": 1, "causal": True, "rope": {"theta": 500000, "fraction": 0.5}}
    doc = {"spec": 1, "inputs": {"x": {"shape": ["B", "T", 8]}}, "nodes": {"a": node}}
    jsonschema.validate(doc, schema)
    node["rope"]["interleave"] = True
    with pytest.raises(jsonschema.ValidationError, match="interleave"):
        jsonschema.validate(doc, schema)


def test_check_also_checks_the_train_section(tmp_path, capsys):
    from builder.commands.cli import main
    spec = tmp_path / "bad_train.yaml"
    spec.write_text("spec: 1\ninputs: {x: {shape: [B, 2]}}\nnodes:\n  a: {op: Linear, out_features: 1}\n"
                    "train:\n  data: {source: toy_linear}\n  optimizer: {type: sgdd, lr: 0.1}\n")
    assert main(["check", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "bad_train.yaml:7:3: error: train.optimizer: unknown type 'sgdd' (did you mean 'sgd'?)" in err
    assert main(["check", "specs/mlp_digits.yaml"]) == 0
