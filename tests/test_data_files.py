"""Data from files: CSV (target by name, categorical one-hot), .npz, .npy memmaps, IDX (MNIST format)."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from builder.data import load_data
from builder.data.files import read_idx
from builder.core.errors import UserError


def write_idx(path, array):
    """An IDX file as MNIST ships them: magic (0, 0, type, ndim), big-endian dims, big-endian data."""
    codes = {np.uint8: 0x08, np.float32: 0x0D, np.int32: 0x0C}
    code = codes[array.dtype.type]
    head = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    data = array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(head + data)


@pytest.fixture
def mnist_like(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=50, dtype=np.uint8)
    for suffix in ("", ".gz"):
        write_idx(tmp_path / f"images-idx3-ubyte{suffix}", images)
        write_idx(tmp_path / f"labels-idx1-ubyte{suffix}", labels)
    return tmp_path, images, labels


def test_idx_plain_is_memory_mapped_and_gz_is_read(mnist_like):
    folder, images, labels = mnist_like
    plain = read_idx(folder / "images-idx3-ubyte")
    assert isinstance(plain, np.memmap) and plain.shape == (50, 28, 28)
    assert np.array_equal(plain, images)
    assert np.array_equal(read_idx(folder / "labels-idx1-ubyte.gz"), labels)
    (folder / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(UserError, match="not an IDX file"):
        read_idx(folder / "bad")


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_source_gives_scaled_images_with_a_channel(mnist_like, suffix):
    folder, images, labels = mnist_like
    d = load_data({"source": "idx", "images": str(folder / f"images-idx3-ubyte{suffix}"),
                   "labels": str(folder / f"labels-idx1-ubyte{suffix}"), "split": [1.0], "split_shuffle": False})
    x, y = d.train.fields
    assert x.shape == (50, 1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.from_numpy(images).float() / 255)
    assert torch.equal(y, torch.from_numpy(labels).long())


def test_streamed_memmap_batches_equal_in_memory_batches(tmp_path):
    """Data that is streamed from .npy memmaps (read a batch of rows at a time) gives the same batches,
    standardised with the same training statistics, as the same data held in memory."""
    rng = np.random.default_rng(1)
    x = rng.normal(3, 2, size=(300, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=300)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    base = {"source": "npy", "x": str(tmp_path / "x.npy"), "y": str(tmp_path / "y.npy"),
            "split": [0.8, 0.2], "standardize": True}
    streamed, held = load_data({**base, "stream": True}), load_data({**base, "stream": False})
    assert streamed.train.streamed and not held.train.streamed
    assert isinstance(streamed.train.fields[0], np.memmap)
    order = held.train.order(True, 0, 0)
    for a, b in zip(streamed.train.batches(64, order), held.train.batches(64, order)):
        assert torch.allclose(a[0], b[0], atol=1e-5) and torch.equal(a[1], b[1])


def test_npz_arrays_by_key(tmp_path):
    np.savez(tmp_path / "d.npz", inputs=np.ones((10, 3), np.float32), labels=np.arange(10))
    d = load_data({"source": "npz", "path": str(tmp_path / "d.npz"), "x": "inputs", "y": "labels", "split": [1.0]})
    assert d.train.fields[0].shape == (10, 3) and d.train.fields[1].dtype == torch.int64
    with pytest.raises(UserError, match=r"no array for input\(s\) x"):
        load_data({"source": "npz", "path": str(tmp_path / "d.npz")})


CSV = """age,city,smoker,cases
30,paris,yes,1.5
40,oslo,no,2.5
50,paris,no,3.5
60,rome,yes,4.5
"""


def test_csv_target_by_name_and_categorical_one_hot(tmp_path):
    (tmp_path / "t.csv").write_text(CSV)
    d = load_data({"source": "csv", "path": str(tmp_path / "t.csv"), "target": "cases", "split": [1.0],
                   "split_shuffle": False})
    x, y = d.train.fields
    # age, city (oslo, paris, rome), smoker (no, yes)
    assert x.shape == (4, 6) and y.shape == (4, 1)
    assert x[0].tolist() == [30, 0, 1, 0, 0, 1] and y[:, 0].tolist() == [1.5, 2.5, 3.5, 4.5]
    assert d.info["columns"]["city"] == ["oslo", "paris", "rome"]
    with pytest.raises(UserError, match="no column 'case'"):
        load_data({"source": "csv", "path": str(tmp_path / "t.csv"), "target": "case"})


def test_csv_one_file_per_split_shares_the_training_categories(tmp_path):
    (tmp_path / "train.csv").write_text(CSV)
    (tmp_path / "test.csv").write_text("age,city,smoker,cases\n35,rome,no,9.0\n")
    d = load_data({"source": "csv", "target": "cases",
                   "files": {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")}})
    assert d.val is None and len(d.train) == 4 and len(d.test) == 1
    assert d.test.fields[0][0].tolist() == [35, 0, 0, 1, 1, 0]
    (tmp_path / "bad.csv").write_text("age,city,smoker,cases\n35,lima,no,9.0\n")
    with pytest.raises(UserError, match="not seen in training"):
        load_data({"source": "csv", "target": "cases",
                   "files": {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "bad.csv")}})


def test_csv_text_target_becomes_class_indices(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,label\n1,2,cat\n3,4,dog\n5,6,cat\n")
    d = load_data({"source": "csv", "path": str(tmp_path / "t.csv"), "target": "label", "split": [1.0],
                   "split_shuffle": False})
    assert d.train.fields[1].tolist() == [0, 1, 0] and d.info["classes"] == ["cat", "dog"]


def test_training_on_mnist_style_idx_files_one_per_split(tmp_path):
    """The digits written as MNIST ships its data (uint8 IDX, gzipped labels), one file pair per split."""
    import builder
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * 255 / 16).round().astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    for split, rows in (("train", slice(0, 1500)), ("t10k", slice(1500, None))):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", images[rows])
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels[rows])
    spec = builder.load(f"""
spec: 1
name: idx_mlp
inputs: {{x: {{shape: [B, 64]}}}}
nodes:
  fc1: {{op: Linear, out_features: 64}}
  act: {{op: ReLU}}
  head: {{op: Linear, out_features: 10}}
train:
  data:
    source: idx
    files:
      train: {{images: {tmp_path}/train-images-idx3-ubyte, labels: {tmp_path}/train-labels-idx1-ubyte.gz}}
      test: {{images: {tmp_path}/t10k-images-idx3-ubyte, labels: {tmp_path}/t10k-labels-idx1-ubyte.gz}}
    batch_size: 32
    standardize: true
  loss: cross_entropy
  optimizer: {{type: adam, lr: 0.003}}
  epochs: 5
  metrics: [accuracy]
""")
    _, history, run_dir = builder.train(spec, run_dir=tmp_path / "run", quiet=True)
    import json
    assert json.loads((run_dir / "test.json").read_text())["accuracy"] > 0.9
    assert "val.loss" not in history[-1]  # no validation split was given


REGRESSION_SPEC = """
spec: 1
name: csv_regression
inputs: {x: {shape: [B, 5]}}
nodes:
  hidden: {op: Linear, out_features: 16}
  act: {op: ReLU}
  out: {op: Linear, out_features: 1}
train:
  data: DATA
  loss: mse
  optimizer: {type: adam, lr: 0.01}
  epochs: 15
  metrics: [r2]
"""


def test_csv_regression_with_a_categorical_column_trains(tmp_path):
    """As the notes' COVID-cases regression: numeric and categorical features, a numeric target."""
    import builder

    rng = np.random.default_rng(0)
    rows = ["temp,humidity,region,cases"]
    effect = {"north": 0.0, "south": 4.0, "east": -3.0}
    for _ in range(600):
        t, h, r = rng.uniform(0, 30), rng.uniform(20, 90), rng.choice(list(effect))
        rows.append(f"{t:.2f},{h:.1f},{r},{0.5 * t - 0.1 * h + effect[r] + rng.normal(0, 0.5):.3f}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    data = f"{{source: csv, path: {tmp_path}/cases.csv, target: cases, standardize: true, batch_size: 32, seed: 0}}"
    spec = builder.load(REGRESSION_SPEC.replace("DATA", data))
    _, history, run_dir = builder.train(spec, run_dir=tmp_path / "run", quiet=True)
    import json
    assert json.loads((run_dir / "test.json").read_text())["r2"] > 0.9


def test_streamed_and_in_memory_data_train_identically(tmp_path):
    import csv as csv_module

    import builder

    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", (x @ np.arange(1, 6, dtype=np.float32))[:, None])
    runs = []
    for stream in ("true", "false"):
        data = (f"{{source: npy, x: {tmp_path}/x.npy, y: {tmp_path}/y.npy, stream: {stream}, "
                "standardize: true, batch_size: 32, seed: 0}")
        spec = builder.load(REGRESSION_SPEC.replace("DATA", data))
        _, _, run_dir = builder.train(spec, run_dir=tmp_path / stream, quiet=True, epochs=3)
        rows = list(csv_module.DictReader(open(run_dir / "metrics.csv")))
        runs.append([{k: v for k, v in r.items() if k != "seconds"} for r in rows])
    assert runs[0] == runs[1]
