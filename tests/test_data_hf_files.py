"""`source: datasets` (issue 23): local Parquet / JSON Lines / CSV through Hugging Face `datasets`, in memory or
streamed (one pass per epoch, shuffled by a buffer seeded by (seed, epoch), resumable)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import builder
from builder.commands.cli import main
from builder.core.errors import UserError
from builder.data import load_data


def rows(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    label = np.where(x[:, 0] + x[:, 1] > 0, "up", "down")
    return [{"pixels": [float(v) for v in r[:3]], "extra": float(r[3]), "label": str(lab)} for r, lab in zip(x, label)]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def write_parquet(path, records):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(records), path)


SPEC = """spec: 1
name: hf
inputs:
  x: {shape: [B, 4]}
nodes:
  hidden: {op: Linear, out_features: 8}
  act: {op: ReLU}
  out: {op: Linear, out_features: 2}
train:
  data: DATA
  loss: cross_entropy
  optimizer: {type: adam, lr: 0.05}
  metrics: [accuracy]
  epochs: 3
"""


def test_parquet_in_memory_trains_and_predict_reads_parquet(tmp_path, capsys):
    write_parquet(tmp_path / "train.parquet", rows(300, 0))
    write_parquet(tmp_path / "test.parquet", rows(50, 1))
    data = {"source": "datasets", "path": str(tmp_path / "train.parquet"), "inputs": ["pixels", "extra"],
            "target": "label", "split": [0.8, 0.2]}
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.replace("DATA", json.dumps(data)))
    _, history, run = builder.train(spec, run_dir=tmp_path / "run", quiet=True)
    assert history[-1]["val.accuracy"] > 0.85
    assert main(["export", str(spec), "--run", str(run), "-o", str(tmp_path / "m.onnx")]) == 0
    assert main(["evaluate", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "test.parquet"), "-o", str(tmp_path / "ev")]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["rows"] == 50 and metrics["accuracy"] > 0.85
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "m.onnx"), "--input", str(tmp_path / "test.parquet")]) == 0
    assert capsys.readouterr().out.split("\n")[0].split(" ")[1] in ("up", "down")


def test_streaming_is_one_pass_per_epoch_shuffled_by_buffer_and_resumable(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", rows(96, 0))
    write_jsonl(tmp_path / "val.jsonl", rows(32, 1))
    cfg = {"source": "datasets", "files": {"train": str(tmp_path / "train.jsonl"), "val": str(tmp_path / "val.jsonl")},
           "inputs": ["pixels", "extra"], "target": "label", "streaming": True, "buffer": 32}
    data = load_data(cfg)
    assert len(data.train) == 96 and len(data.val) == 32 and data.info["classes"] == ["down", "up"]

    def epoch(e):
        return torch.cat([b[0] for b in data.train.batches(10, data.train.order(True, 0, e))])
    first, again, second = epoch(0), epoch(0), epoch(1)
    assert first.shape == (96, 4) and torch.equal(first, again) and not torch.equal(first, second)
    assert torch.allclose(first.sum(0), second.sum(0), atol=1e-4)  # the same rows, in another order
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.replace("DATA", json.dumps({**cfg, "batch_size": 16})))
    builder.train(spec, run_dir=tmp_path / "a", quiet=True, epochs=2)
    builder.train(spec, run_dir=tmp_path / "b", quiet=True, epochs=1)
    builder.train(resume=tmp_path / "b", quiet=True, epochs=2)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["networks"]["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["networks"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("extra, words", [
    ({"streaming": True, "split": [0.8, 0.2]}, "give the splits as files"),
    ({"inputs": ["nope"]}, "no column 'nope'"),
    ({"path": "missing/*.parquet"}, "no such file: missing/*.parquet"),
    ({"streaming": True, "files": {"train": "TRAIN"}, "standardize": True}, "train.data.standardize: not with streaming"),
])
def test_bad_keys_are_one_line(tmp_path, extra, words):
    write_jsonl(tmp_path / "t.jsonl", rows(10, 0))
    cfg = {"source": "datasets", "path": str(tmp_path / "t.jsonl"), "target": "label", **extra}
    if "files" in cfg:
        cfg["files"] = {"train": str(tmp_path / "t.jsonl")}
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace("*", r"\*")):
        load_data(cfg)


def test_arrow_and_csv_files_read_alike(tmp_path):
    import pyarrow as pa
    table = pa.table({"a": np.arange(20, dtype=np.float32), "b": np.ones(20, np.float32), "y": np.arange(20) % 3})
    with pa.OSFile(str(tmp_path / "t.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    (tmp_path / "t.csv").write_text("a,b,y\n" + "".join(f"{i}.0,1.0,{i % 3}\n" for i in range(20)))
    got = [load_data({"source": "datasets", "path": str(tmp_path / f"t.{k}"), "target": "y", "split": [1.0],
                      "split_shuffle": False}).train.fields for k in ("arrow", "csv")]
    for x, y in got:
        assert torch.equal(x, got[0][0]) and torch.equal(y, got[0][1]) and y.dtype == torch.int64
    assert got[0][0][:, 0].tolist() == list(range(20))
