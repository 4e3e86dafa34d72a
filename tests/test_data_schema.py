"""Every `train.data` key a source takes is in the JSON Schema (one line each), and a mistake in a new key
is one `build check` line at that key's file:line (issue 23)."""
from __future__ import annotations

import inspect

import jsonschema
import pytest

from builder.commands.cli import main
from builder.data import COMMON_KEYS, READERS, hf_files, images, text_columns, windows
from builder.spec.data_schema import COMMON, SOURCE_KEYS
from builder.spec.data_schema import data_schema
from builder.spec.schema import spec_schema


def test_the_spec_schema_holds_the_data_schema():
    assert spec_schema()["properties"]["train"]["properties"]["data"] == data_schema()


def test_every_source_key_is_in_the_schema_with_a_description():
    keys = set(COMMON_KEYS) | set(images.KEYS) | set(text_columns.KEYS) | {"text", "streaming", "buffer", "format"}
    for reader in READERS.values():
        keys |= set(inspect.signature(reader).parameters) - {"seed", "layout", "rows", "input_names"}  # not user keys
    written = {**COMMON, **SOURCE_KEYS}
    assert keys <= set(written), sorted(keys - set(written))
    assert set(windows.KEYS) == set(COMMON["window"]["properties"])
    assert set(images.AUGMENT_KEYS) == set(SOURCE_KEYS["augment"]["properties"])
    assert all(v.get("description") for v in written.values())
    assert set(inspect.signature(hf_files.read_datasets).parameters) - {"layout", "input_names"} <= set(written)


@pytest.mark.parametrize("data, ok", [
    ({"source": "images", "path": "p", "resize": [32, 32], "augment": {"flip": True, "crop": 4}, "workers": 2}, True),
    ({"source": "csv", "path": "a.csv", "window": {"lookback": 24, "horizon": 1}}, True),
    ({"source": "csv", "path": "a.csv", "text": ["review"], "tokenizer": {"type": "wordpiece", "vocab_size": 100}}, True),
    ({"source": "datasets", "path": "a.parquet", "streaming": True, "buffer": 10}, True),
    ({"source": "csv", "path": "a.csv", "inputs": {"x": ["a", "b*"], "adj": ["c"]}}, True),
    ({"source": "images", "path": "p", "augment": {"rotate": 3}}, False),
    ({"source": "csv", "path": "a.csv", "window": {"lookbak": 3}}, False),
    ({"source": "csv", "pth": "a.csv"}, False),
])
def test_schema_accepts_the_new_keys_and_rejects_misspellings(data, ok):
    if ok:
        jsonschema.validate(data, data_schema())
    else:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, data_schema())


@pytest.mark.parametrize("data, line, words", [
    ("    source: images\n    path: p\n    resize: 8\n    augment: {rotate: 3}\n", 12, "train.data.augment: keys flip"),
    ("    source: csv\n    path: a.csv\n    window:\n      lookback: 0\n", 12, "train.data.window.lookback"),
    ("    source: images\n    path: p\n    resize: 8\n    workerz: 2\n", 12, "takes no key 'workerz'"),
    ("    source: csv\n    path: a.csv\n    text: [r]\n    max_length: 0\n", 12, "train.data.max_length"),
])
def test_check_names_file_and_line_of_a_bad_data_key(tmp_path, capsys, data, line, words):
    spec = tmp_path / "s.yaml"
    spec.write_text("spec: 1\nname: s\ninputs: {x: {shape: [B, 4]}}\nnodes:\n  out: {op: Linear, out_features: 1}\n"
                    "train:\n  loss: mse\n  data:\n" + data)
    assert main(["check", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{spec}:{line}:") and words in err and len(err.splitlines()) == 1, err
