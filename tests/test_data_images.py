"""`source: images` (issue 23): class folders decoded with Pillow in DataLoader workers, augmentation on the
training split only and exactly reproducible, the preparation carried to ONNX and `build predict`/`evaluate`
on files, folders and globs."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import builder
from builder.commands.cli import main
from builder.core.errors import UserError
from builder.data import load_data

COLOURS = {"blue": (40, 60, 200), "green": (50, 180, 60), "red": (210, 50, 40)}


def make_images(folder, per_class=12, size=(18, 15), seed=0):
    """Noisy colour patches, one class folder per colour (sizes differ from the network's on purpose)."""
    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(-40, 40, (size[1], size[0], 3))
            pixels = np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
    return folder


SPEC = """spec: 1
name: colours
inputs:
  x: {shape: [B, 3, 8, 8]}
nodes:
  conv: {op: Conv2d, out_channels: 4, kernel_size: 3, padding: 1}
  act: {op: ReLU}
  pool: {op: AdaptiveAvgPool2d, output_size: 1}
  flat: {op: Flatten}
  out: {op: Linear, out_features: 3}
train:
  data: {source: images, path: PATH, resize: [10, 10], crop: [8, 8], workers: WORKERS, batch_size: 8,
         normalize: {mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}, augment: {flip: true, crop: 1, color: 0.1},
         split: [0.75, 0.25]}
  loss: cross_entropy
  optimizer: {type: adam, lr: 0.05}
  metrics: [accuracy]
  epochs: 4
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("img")
    make_images(root / "train")
    spec = root / "colours.yaml"
    spec.write_text(SPEC.replace("PATH", str(root / "train")).replace("WORKERS", "2"))
    _, history, run = builder.train(spec, run_dir=root / "run", quiet=True)
    assert main(["export", str(spec), "--run", str(run), "-o", str(root / "m.onnx")]) == 0
    return root, spec, run, history


def test_trains_from_class_folders_and_the_model_carries_its_preparation(trained):
    root, spec, run, history = trained
    assert history[-1]["val.accuracy"] == 1.0
    props = {p.key: p.value for p in onnx.load(str(root / "m.onnx")).metadata_props}
    assert json.loads(props["builder.class_labels"]) == ["blue", "green", "red"]
    layout = json.loads(props["builder.data"])["layout"]
    assert layout["resize"] == [10, 10] and layout["crop"] == [8, 8] and layout["mode"] == "RGB"
    # normalize is the exported graph's first op: raw [0, 1] pixels in
    graph = onnx.load(str(root / "m.onnx")).graph
    assert graph.node[0].op_type == "Sub" and props["builder.input_preparation"].startswith("inside the model")


def test_predict_and_evaluate_take_files_folders_and_globs(trained, tmp_path, capsys):
    root, spec, run, _ = trained
    make_images(tmp_path / "test", per_class=4, size=(11, 13), seed=5)
    model = str(root / "m.onnx")
    capsys.readouterr()
    for source in ([model], [str(spec), "--run", str(run)]):
        assert main(["evaluate", *source, "--data", str(tmp_path / "test"), "-o", str(tmp_path / "ev")]) == 0
        metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
        assert metrics["rows"] == 12 and metrics["accuracy"] == 1.0
    capsys.readouterr()
    assert main(["predict", model, "--input", str(tmp_path / "test" / "red" / "0.png")]) == 0
    assert capsys.readouterr().out.startswith("0: red (")
    assert main(["predict", model, "--input", str(tmp_path / "test" / "*" / "1.png"), "-o", str(tmp_path / "p.csv")]) == 0
    rows = (tmp_path / "p.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["blue", "green", "red"]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    capsys.readouterr()
    assert main(["predict", model, "--input", str(tmp_path / "broken")]) == 2
    err = capsys.readouterr().err
    assert "a.png: not a readable image" in err and len(err.strip().splitlines()) == 1


def test_build_serve_predict_takes_image_bytes_prepared_as_predict_does(trained, tmp_path):
    """/predict {"images": [base64 PNG, ...]}: decoded and prepared as `build predict` prepares files (issue 24),
    by a real `build serve` process on 127.0.0.1; a broken image is a 400 and the server carries on."""
    import base64
    import urllib.error
    import urllib.request

    from export.inputs import read_images
    from export.predict import OnnxRunner

    root = trained[0]
    make_images(tmp_path / "test", per_class=2, size=(12, 9), seed=7)
    files = sorted((tmp_path / "test").glob("*/*.png"))
    encoded = [base64.b64encode(f.read_bytes()).decode() for f in files]
    runner = OnnxRunner(str(root / "m.onnx"), "cpu")
    from builder.data.images import for_model
    want = np.concatenate([for_model(str(f), runner.layout, ["x"])[0][0] for f in files])  # as predict reads files
    got = read_images(encoded, runner.layout, runner.inputs)["x"]
    assert got.shape == (6, 3, 8, 8) and np.array_equal(got, want)
    with pytest.raises(UserError, match=r"images\[0\]: not a readable image"):
        read_images([base64.b64encode(b"not a png").decode()], runner.layout, runner.inputs)
    with pytest.raises(UserError, match="not base64"):
        read_images(["%%%"], runner.layout, runner.inputs)

    from serving import serving

    with serving(root / "m.onnx", tmp_path / "serve.log", "--threads", "1") as (_, port):
        def post(body: dict):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=json.dumps(body).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        code, answer = post({"images": encoded})
        assert code == 200, answer
        assert [p["label"] for p in answer["predictions"]] == [f.parent.name for f in files]
        code, answer = post({"images": [base64.b64encode(b"broken").decode()]})
        assert code == 400 and "images[0]" in json.dumps(answer)
        assert post({"images": encoded[:1]})[0] == 200  # still serving


def test_augmentation_is_exact_across_workers_and_training_only(tmp_path):
    make_images(tmp_path / "d", per_class=4)
    cfg = {"source": "images", "path": str(tmp_path / "d"), "resize": 8, "split": [0.5, 0.5],
           "augment": {"flip": True, "crop": 2, "color": 0.3}}
    batches = []
    for workers in (0, 2):
        data = load_data({**cfg, "workers": workers})
        order = data.train.order(True, 3, 1)
        batches.append([b[0] for b in data.train.batches(4, order)])
        plain = next(data.val.batches(6, data.val.order(False, 3, 1)))[0]
        assert torch.equal(plain, next(data.val.batches(6, data.val.order(False, 3, 2)))[0])  # val: no augment
    for a, b in zip(*batches):
        assert torch.equal(a, b)
    data = load_data({**cfg, "workers": 0})
    epoch2 = [b[0] for b in data.train.batches(4, data.train.order(True, 3, 2))]
    assert not torch.equal(torch.cat(epoch2).sum(0), torch.cat(batches[0]).sum(0))  # a new epoch, new draws


def test_resume_continues_exactly(tmp_path):
    make_images(tmp_path / "d", per_class=4)
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.replace("PATH", str(tmp_path / "d")).replace("WORKERS", "0").replace("epochs: 6", "epochs: 2"))
    builder.train(spec, run_dir=tmp_path / "a", quiet=True, epochs=2)
    builder.train(spec, run_dir=tmp_path / "b", quiet=True, epochs=1)
    builder.train(resume=tmp_path / "b", quiet=True, epochs=2)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["networks"]["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["networks"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("key, value, words", [
    ("resize", [0, 3], "train.data.resize: a size in pixels"),
    ("augment", {"flip": True, "rotate": 3}, "train.data.augment: keys flip, crop, color"),
    ("normalize", {"mean": [0.5], "std": [0.2]}, "one positive std per channel (3 for mode RGB)"),
    ("workers", -1, "train.data.workers"),
    ("sizee", 3, "source 'images' takes no key 'sizee'"),
    ("standardize", True, "train.data.standardize: not for source 'images'"),
])
def test_bad_keys_are_one_line(tmp_path, key, value, words):
    make_images(tmp_path / "d", per_class=1)
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_data({"source": "images", "path": str(tmp_path / "d"), "resize": 8, key: value})


def test_a_csv_of_paths_and_labels_and_files_per_split(tmp_path):
    make_images(tmp_path / "d", per_class=2)
    files = sorted((tmp_path / "d").rglob("*.png"))
    (tmp_path / "list.csv").write_text("path,label\n" + "".join(f"{f.relative_to(tmp_path)},{f.parent.name}\n" for f in files))
    data = load_data({"source": "images", "path": str(tmp_path / "list.csv"), "resize": 8, "split": [1.0], "mode": "L"})
    assert data.info["classes"] == ["blue", "green", "red"] and len(data.train) == 6
    x, y = data.train.sample(6)
    assert x.shape == (6, 1, 8, 8) and sorted(y.tolist()) == [0, 0, 1, 1, 2, 2]
    make_images(tmp_path / "v", per_class=1, seed=2)
    (tmp_path / "v" / "purple").mkdir()
    (tmp_path / "v" / "purple" / "p.png").write_bytes((tmp_path / "v" / "red" / "0.png").read_bytes())
    with pytest.raises(UserError, match="class\\(es\\) purple not among the model's classes"):
        load_data({"source": "images", "files": {"train": str(tmp_path / "d"), "val": str(tmp_path / "v")}, "resize": 8})
    (tmp_path / "v" / "purple" / "p.png").unlink()
    (tmp_path / "v" / "purple").rmdir()
    data = load_data({"source": "images", "files": {"train": str(tmp_path / "d"), "val": str(tmp_path / "v")}, "resize": 8})
    assert len(data.train) == 6 and len(data.val) == 3 and data.test is None
