"""Fuzzing every reader of untrusted files (issue 21), as tests/test_fuzz_specs.py fuzzes specs.

Each reader gets a valid seed file (a run's resolved.yaml, a weight map, vocab.json, a BPE tokenizer.json,
ONNX metadata, a CSV table, an .npz archive) damaged by seeded mutations: deleted, duplicated and swapped
spans, hostile characters (brackets, anchors, aliases, tags, quotes, NUL, invalid UTF-8), deep nesting,
alias bombs, huge numbers and truncation. Every case must end in the reader's value or a one-line
UserError: any other exception is a failure. 2,400 cases, the same every run (random.Random(seed)).
"""
from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from builder.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CASES = 400  # per reader; six readers

HOSTILE = ["[", "]", "{", "}", "&a ", "*a", "!!python/object:os.system ", "\"", "\\", ":", ",", "- ", "\n",
           "\t", "\x00", "9" * 400, "-1", "010", "1e999", "NaN", "null", "${", "'", "#", "=", "\u2983", "ä"]
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


def mutate_text(text: str, rnd: random.Random) -> str:
    for _ in range(rnd.randint(1, 3)):
        n = len(text)
        i, j = sorted(rnd.randint(0, n) for _ in range(2))
        kind = rnd.randrange(9)
        if kind == 0:
            text = text[:i] + text[j:]
        elif kind == 1:
            text = text[:i] + text[i:j] * rnd.randint(2, 4) + text[i:]
        elif kind == 2:
            text = text[:i] + rnd.choice(HOSTILE) + text[i:]
        elif kind == 3:
            text = text[:i]
        elif kind == 4:
            depth = rnd.choice([70, 1000, 20_000])
            text = text[:i] + rnd.choice("[{") * depth + text[i:]
        elif kind == 5:
            text = BOMB + text if rnd.random() < 0.5 else text[:i] + json.dumps([[0] * 50] * 50) + text[i:]
        elif kind == 6:
            k = rnd.randint(0, n)
            text = text[:i] + text[k:k + 20] + text[i + 20:]
        elif kind == 7:
            text = text.replace(rnd.choice(["1", "0", "2", "a", "e", "."]), rnd.choice(HOSTILE), rnd.randint(1, 3))
        else:
            text = text[:i] + "".join(chr(rnd.randint(0, 0x2FF)) for _ in range(rnd.randint(1, 8))) + text[i:]
    return text


def mutate_bytes(data: bytes, rnd: random.Random) -> bytes:
    raw = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        kind = rnd.randrange(4)
        i = rnd.randrange(len(raw) + 1)
        if kind == 0 and raw:
            raw[min(i, len(raw) - 1)] ^= 1 << rnd.randrange(8)
        elif kind == 1:
            del raw[i:i + rnd.randint(1, 64)]
        elif kind == 2:
            raw[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 16)))
        else:
            raw = raw[:i]
    return bytes(raw)


def write(path: Path, content) -> Path:
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8", "surrogatepass"))
    else:
        path.write_bytes(content)
    return path


# -- the seeds and readers --------------------------------------------------------------------------------
def resolved_seed() -> str:
    import builder
    spec = builder.load(ROOT / "specs" / "xor_mlp.yaml")
    return yaml.safe_dump({**spec.resolved, "spec_path": None, "train": dict(spec.train)}, sort_keys=False)


def read_run(path):
    from builder.training.runlog import read_resolved, run_params
    run_params(path.parent)
    return read_resolved(path.parent)


def read_weight_map(path):
    from builder.weights.loader import parse_map
    rules, ignore = parse_map(path)
    keys = ["transformer.h.0.attn.c_attn.weight", "transformer.wte.weight", "h.11.mlp.c_fc.bias", "a" * 300]
    return [rule.pattern.match(k) for rule in rules + [] for k in keys] + [p.match(k) for p in ignore for k in keys]


def read_tokenizer(path):
    from builder.data import tokenizer
    tok = tokenizer.in_folder(path.parent)
    return tok.decode(tok.encode("ab")) if tok is not None and tok.kind == "bpe" else tok


def metadata_seed() -> str:
    layout = {"delimiter": ",", "missing": "error", "features": ["a", "colour"], "kinds": {"a": "number",
              "colour": "category", "y": "category"}, "categories": {"colour": ["blue", "red"]}, "fill": {},
              "target": ["y"], "num_features": 3, "classes": ["no", "yes"]}
    props = {"builder.spec": "xor", "builder.inputs": json.dumps([{"name": "x", "shape": ["B", 2], "dtype": "float32",
                                                                    "value_range": None}]),
             "builder.outputs": json.dumps(["head"]), "builder.class_labels": json.dumps(["no", "yes"]),
             "builder.dynamic": json.dumps(["B"]), "builder.dim_ranges": json.dumps({"T": [1, None]}),
             "builder.fixed_dims": json.dumps({"T": {"size": 4, "why": "table"}}), "builder.vocab": json.dumps(list("abc")),
             "builder.data": json.dumps({"layout": layout, "outputs_in_data_units": False})}
    return json.dumps(props)


def read_onnx_metadata(path):
    """The metadata_props of a model: each value (a string) damaged on its own, as a crafted file holds them."""
    from builder.data.tokenizer import from_metadata
    from export.metadata import read_metadata
    from export.predict import OnnxRunner  # noqa: F401  (the reader's own module imports cleanly)
    props = json.loads(path.read_text(encoding="utf-8"))  # the seed holder, not the input under test
    rnd = random.Random(path.stat().st_size)
    mutated = {k: mutate_text(v, rnd) if rnd.random() < 0.6 else v for k, v in props.items()}
    meta = read_metadata(mutated, "fuzz.onnx")
    from_metadata(meta)
    layout = (meta.get("data") or {}).get("layout")
    if layout:
        from builder.data.files import read_csv
        csv = path.parent / "in.csv"
        csv.write_text("a,colour,y\n1,red,yes\n2,blue,no\n")
        read_csv(csv, layout=layout, delimiter=layout.get("delimiter", ","))
    return meta


CSV_SEED = "a,b,colour,y\n1.5,2,red,yes\n0.5,-1,blue,no\n3,4,red,no\n2,2,green,yes\n"


def read_table(path):
    from builder.data.files import read_csv
    from export.inputs import ModelInput, read_arrays
    try:
        read_arrays(path, [ModelInput("x", (None, 4), "float32")])
    except UserError:
        pass
    return read_csv(path, target="y", missing="drop")


def npz_seed() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buf, x=rng.random((6, 2)).astype(np.float32), y=np.arange(6) % 2, classes=np.array(["a", "b"]))
    return buf.getvalue()


def read_arrays_file(path):
    from builder.data.files import read_npz
    from export.inputs import ModelInput, read_arrays
    try:
        read_arrays(path, [ModelInput("x", (None, 2), "float32")])
    except UserError:
        pass
    return read_npz(path)


def seeds():
    from builder.data.tokenizer import train_bpe
    bpe = train_bpe("abracadabra " * 20, {"type": "bpe", "vocab_size": 260}).file()[1]
    return {
        "resolved": ("resolved.yaml", resolved_seed(), read_run, False),
        "weight_map": ("map.yaml", (ROOT / "specs" / "gpt2.hf-map.yaml").read_text(), read_weight_map, False),
        "vocab": ("vocab.json", json.dumps(list("abcdefgh \n")), read_tokenizer, False),
        "tokenizer": ("tokenizer.json", bpe, read_tokenizer, False),
        "onnx_metadata": ("meta.json", metadata_seed(), read_onnx_metadata, False),
        "csv": ("t.csv", CSV_SEED, read_table, False),
        "npz": ("a.npz", npz_seed(), read_arrays_file, True),
    }


SEEDS = None


def _seeds():
    global SEEDS
    if SEEDS is None:
        SEEDS = seeds()
    return SEEDS


@pytest.mark.parametrize("reader", ["resolved", "weight_map", "vocab", "tokenizer", "onnx_metadata", "csv", "npz"])
def test_every_damaged_file_is_a_value_or_one_line(tmp_path, reader):
    name, seed, read, binary = _seeds()[reader]
    rnd = random.Random(f"{reader}-21")
    outcomes = {"ok": 0, "refused": 0}
    for case in range(CASES if reader != "onnx_metadata" else CASES // 2):
        folder = tmp_path / str(case)
        folder.mkdir()
        content = mutate_bytes(seed, rnd) if binary else mutate_text(seed, rnd)
        path = write(folder / name, content)
        if reader == "onnx_metadata":
            path.write_text(seed + " " * case)  # the seed; its size seeds the value damage
        try:
            read(path)
            outcomes["ok"] += 1
        except UserError as e:
            assert str(e).strip() and "Traceback" not in str(e), (case, content[:300])
            if reader not in ("weight_map",):  # a WeightsError lists keys on several lines; a map error is one
                assert len(str(e).strip().splitlines()) == 1, (case, str(e)[:500])
            outcomes["refused"] += 1
        except Exception as e:  # noqa: BLE001 -- the point: anything else is a defect
            pytest.fail(f"{reader} case {case}: {type(e).__name__}: {str(e)[:300]}\n--- input ---\n{content[:600]!r}")
    assert outcomes["refused"] > 0 and sum(outcomes.values()) >= CASES // 2
