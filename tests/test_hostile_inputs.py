"""Damaged and hostile input files for the data loaders (`train.data`) and `build predict`: wrong dtype, wrong
shape, NaNs, empty files, truncated NPY/NPZ/IDX files and pickled object arrays are one-line errors (exit 2
from the CLI), and a pickle is never unpickled."""
from __future__ import annotations

import gzip
import os
import re
import struct

import numpy as np
import pytest

from builder.commands.cli import main
from builder.data import load_data
from builder.core.errors import UserError
from export import inputs
from export.inputs import ModelInput


class Payload:
    """Unpickling this runs `touch <marker>`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def files(tmp_path):
    """Good and damaged files: name -> path; `marker` is the file a pickle would create."""
    marker = tmp_path / "PWNED"
    x = np.random.default_rng(0).random((12, 2)).astype(np.float32)
    y = np.arange(12) % 2
    out = {"marker": marker}

    def put(name, data: bytes):
        out[name] = tmp_path / name
        out[name].write_bytes(data)

    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    np.savez_compressed(tmp_path / "big.npz", x=np.random.default_rng(1).random((500, 2)), y=np.arange(500) % 2)
    for name in ("x.npy", "y.npy", "xy.npz", "big.npz"):
        out[name] = tmp_path / name
    put("empty.npy", b"")
    put("empty.npz", b"")
    put("trunc.npy", out["x.npy"].read_bytes()[:-40])
    put("trunc.npz", out["xy.npz"].read_bytes()[:-60])
    raw = bytearray(out["big.npz"].read_bytes())
    raw[200:260] = bytes(60)  # damage inside a compressed member; the zip directory is intact
    put("corrupt.npz", bytes(raw))
    np.save(tmp_path / "obj.npy", np.array([Payload(marker), 1], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "obj.npz", x=np.array([Payload(marker), 1], dtype=object))
    out["obj.npy"], out["obj.npz"] = tmp_path / "obj.npy", tmp_path / "obj.npz"
    nan = x.copy()
    nan[5, 1] = np.nan
    nan[7, 0] = np.inf
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "zero.npy", np.zeros((0, 2), np.float32))
    np.save(tmp_path / "text.npy", np.array([["a", "b"]] * 12))
    np.save(tmp_path / "y11.npy", np.arange(11) % 2)
    np.save(tmp_path / "x3.npy", np.zeros((12, 3), np.float32))
    for name in ("nan.npy", "zero.npy", "text.npy", "y11.npy", "x3.npy"):
        out[name] = tmp_path / name
    images = (np.random.default_rng(2).random((20, 4, 4)) * 255).astype(np.uint8)
    head = bytes([0, 0, 8, 3]) + struct.pack(">iii", 20, 4, 4)
    put("img.idx", head + images.tobytes())
    put("lab.idx", bytes([0, 0, 8, 1]) + struct.pack(">i", 20) + bytes(i % 2 for i in range(20)))
    put("img_trunc.idx", head + images.tobytes()[:100])
    put("img_header.idx", head[:9])
    put("img_empty.idx", b"")
    put("img_trunc.idx.gz", gzip.compress(head + images.tobytes())[:60])
    return out


def load_error(cfg) -> str:
    with pytest.raises(UserError) as info:
        load_data(cfg)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_data_loaders_refuse_damaged_files_in_one_line(files):
    f = files
    assert len(load_data({"source": "npy", "x": f["x.npy"], "y": f["y.npy"]}).train) > 0  # the good ones load
    assert len(load_data({"source": "npz", "path": f["xy.npz"]}).train) > 0
    assert len(load_data({"source": "idx", "images": f["img.idx"], "labels": f["lab.idx"]}).train) > 0

    cases = {
        # empty files
        "empty.npy": ({"source": "npy", "x": f["empty.npy"]}, "not a readable .npy array"),
        "empty.npz": ({"source": "npz", "path": f["empty.npz"]}, "not a readable .npz archive"),
        "img_empty.idx": ({"source": "idx", "images": f["img_empty.idx"]}, r"not an IDX file \(bad magic none: empty file\)"),
        "zero rows": ({"source": "npy", "x": f["zero.npy"]}, "no samples"),
        # truncated files
        "trunc.npy": ({"source": "npy", "x": f["trunc.npy"]}, r"is truncated: its header says float32 \[12, 2\]"),
        "trunc.npz": ({"source": "npz", "path": f["trunc.npz"]}, "not a readable .npz archive"),
        "corrupt.npz": ({"source": "npz", "path": f["corrupt.npz"]}, "not a readable .npz archive"),
        "img_trunc.idx": ({"source": "idx", "images": f["img_trunc.idx"]},
                          r"is truncated: its header says \[20, 4, 4\] uint8 \(320 bytes of data\), the file holds 100"),
        "img_header.idx": ({"source": "idx", "images": f["img_header.idx"]}, "truncated inside its header"),
        "img_trunc.idx.gz": ({"source": "idx", "images": f["img_trunc.idx.gz"]}, "truncated or corrupt"),
        # pickles are never loaded
        "obj.npy": ({"source": "npy", "x": f["obj.npy"]}, "holds Python objects"),
        "obj.npz": ({"source": "npz", "path": f["obj.npz"]}, "Object arrays cannot be loaded"),
        # wrong dtype, mismatched lengths, NaN/Inf
        "text": ({"source": "npy", "x": f["text.npy"]}, "the input is <U1 data; only real numbers"),
        "lengths": ({"source": "npy", "x": f["x.npy"], "y": f["y11.npy"]},
                    "different numbers of samples: input 12, target 11"),
        "nan": ({"source": "npy", "x": f["nan.npy"], "y": f["y.npy"]},
                "the input holds 2 NaN or Inf value.s., the first in sample 5"),
        "nan per split": ({"source": "npy", "files": {"train": {"x": f["x.npy"], "y": f["y.npy"]},
                                                      "val": {"x": f["nan.npy"], "y": f["y.npy"]}}},
                          r"train.data.files.val \(npy\): the input holds 2 NaN"),
    }
    for name, (cfg, pattern) in cases.items():
        message = load_error(cfg)
        assert re.search(pattern, message), (name, message)
    assert not f["marker"].exists()  # no pickle ran


def test_wrong_shape_or_dtype_of_training_data_is_one_line_error(files, tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("spec: 1\nname: s\ninputs:\n  x: {shape: [B, 2]}\nnodes:\n  head: {op: Linear, out_features: 2}\n"
                    "train:\n  data: {source: npy, x: X, y: Y, split: [0.75, 0.25], batch_size: 4}\n"
                    "  loss: cross_entropy\n  epochs: 1\n")
    run = ["train", str(spec), "--quiet", "--device", "cpu", "--run-dir"]
    # 3 features for a network taking 2
    assert main(run + [str(tmp_path / "r1"), "--set", f"train.data.x={files['x3.npy']}",
                       "--set", f"train.data.y={files['y.npy']}"]) == 2
    assert capsys.readouterr().err.strip() == "data gives input x samples of shape [3], the network wants [2]"
    # targets of 3 class probabilities for a network with 2 outputs
    assert main(run + [str(tmp_path / "r2"), "--set", f"train.data.x={files['x.npy']}",
                       "--set", f"train.data.y={files['x3.npy']}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("train: the data does not fit the network or the loss cross_entropy "
                          "(inputs [4, 2] float32; target [4, 3] float32): ") and "\n" not in err


def predict_error(path, model_inputs) -> str:
    with pytest.raises(UserError) as info:
        inputs.conform(inputs.read_arrays(path, model_inputs), model_inputs, str(path))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_predict_inputs_refuse_damaged_files_in_one_line(files, tmp_path):
    f = files
    x = [ModelInput("x", ("B", 2), "float32")]
    ids = [ModelInput("tokens", ("B", 2), "int64", (0, 10))]
    assert inputs.conform(inputs.read_arrays(f["x.npy"], x), x, "x.npy")["x"].shape == (12, 2)
    (tmp_path / "nan.csv").write_text("1,2\nnan,3\n4,inf\n")
    (tmp_path / "empty.csv").write_text("")
    expected = {
        "empty.npy": (x, "not a readable .npy array"),
        "empty.npz": (x, "not a readable .npz archive"),
        "trunc.npy": (x, "not a readable .npy array"),
        "trunc.npz": (x, "not a readable .npz archive"),
        "corrupt.npz": (x, "not a readable .npz archive"),
        "obj.npy": (x, "Object arrays cannot be loaded when allow_pickle=False"),
        "obj.npz": (x, "Object arrays cannot be loaded when allow_pickle=False"),
        "nan.npy": (x, "input 'x' holds 2 NaN or Inf value(s), the first in sample 5"),
        "nan.csv": (x, "input 'x' holds 2 NaN or Inf value(s), the first in sample 1"),
        "empty.csv": (x, "no rows of numbers"),
        "zero.npy": (x, "input 'x' holds no samples (shape [0, 2])"),
        "x3.npy": (x, "input 'x' float32 [B, 2] got an array of shape [12, 3]"),
        "text.npy": (x, "expects float32, got str32"),
        "x.npy": (ids, "input 'tokens' [B, 2] expects int64, got float32"),
    }
    for name, (model_inputs, text) in expected.items():
        path = f.get(name) or tmp_path / name
        assert text in predict_error(path, model_inputs), name
    assert not f["marker"].exists()


def test_build_predict_on_hostile_input_exits_2_with_one_line(files, tmp_path, capsys):
    onnx = tmp_path / "xor.onnx"
    assert main(["export", "specs/xor_mlp.yaml", "--random", "-o", str(onnx)]) == 0
    capsys.readouterr()
    for name in ("obj.npy", "nan.npy", "trunc.npz", "empty.npy"):
        assert main(["predict", str(onnx), "--input", str(files[name])]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(files[name]) in err[0], err
    assert not files["marker"].exists()
