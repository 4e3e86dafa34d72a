"""`build serve`: a real server process on 127.0.0.1 spoken to by Triton's own HTTP client (tritonclient),
compared with onnxruntime in-process; bad requests are one-line 4xx answers and the server carries on;
concurrent requests run in shared batches; /predict takes the training CSV's columns by name."""
from __future__ import annotations

import csv
import json
import urllib.error
import urllib.request

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient  # the test extra: pip install -e .[test]
from tritonclient.utils import InferenceServerException

from builder.commands.cli import main
from serving import serving


FRUIT = """spec: 1
name: fruit
inputs: {x: {shape: [B, 5]}}
nodes:
  hidden: {op: Linear, out_features: 8}
  act: {op: ReLU}
  out: {op: Linear, out_features: 3}
train:
  data: {source: csv, target: fruit, standardize: true, batch_size: 16, seed: 0,
         files: {train: DIR/train.csv, test: DIR/test.csv}}
  loss: cross_entropy
  optimizer: {type: adam, lr: 0.05}
  epochs: 3
  metrics: [accuracy]
"""
COLORS = ["red", "green", "blue"]


def fruit_rows(n, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        size, weight = rng.uniform(2, 12), rng.uniform(50, 300)
        color = COLORS[rng.integers(3)]
        fruit = "plum" if size < 5 else ("apple" if color == "red" else "pear")
        rows.append([f"{size:.2f}", f"{weight:.1f}", color, fruit])
    return rows


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The fruit classifier trained 3 epochs on a CSV, exported, and served by `build serve` (a subprocess)."""
    folder = tmp_path_factory.mktemp("serve")
    for name, n, seed in (("train", 150, 0), ("test", 30, 1)):
        with open(folder / f"{name}.csv", "w", newline="") as f:
            csv.writer(f).writerows([["size", "weight", "color", "fruit"]] + fruit_rows(n, seed))
    (folder / "fruit.yaml").write_text(FRUIT.replace("DIR", str(folder)))
    assert main(["train", str(folder / "fruit.yaml"), "--run-dir", str(folder / "run"), "--quiet",
                 "--device", "cpu"]) == 0
    model = folder / "fruit.onnx"
    assert main(["export", str(folder / "fruit.yaml"), "--run", str(folder / "run"), "-o", str(model)]) == 0
    with serving(model, folder / "serve.log", "--max-delay-ms", "100", "--max-batch", "64",
                 "--threads", "1") as (proc, port):
        client = httpclient.InferenceServerClient(f"127.0.0.1:{port}", concurrency=16, network_timeout=30)
        try:
            yield {"folder": folder, "model": model, "port": port, "client": client, "proc": proc,
                   "session": ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])}
        finally:
            client.close()


def raw_post(port, path, body: bytes):
    """(status, JSON answer) of a POST sent without any client library's checks."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_tritonclient_speaks_to_build_serve_and_gets_onnxruntime_answers(server):
    client = server["client"]
    assert client.is_server_live() and client.is_model_ready("fruit")
    meta = client.get_model_metadata("fruit")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 5]}]
    assert meta["outputs"] == [{"name": "out", "datatype": "FP32", "shape": [-1, 3]}]
    x = np.random.default_rng(3).uniform(0, 10, (4, 5)).astype(np.float32)
    expected = server["session"].run(None, {"x": x})[0]
    for binary in (True, False):  # the binary tensor extension and plain JSON, both ways
        tensor = httpclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        result = client.infer("fruit", [tensor], outputs=[httpclient.InferRequestedOutput("out", binary_data=binary)])
        np.testing.assert_allclose(result.as_numpy("out"), expected, rtol=1e-5, atol=1e-6)
    tensor = httpclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    np.testing.assert_allclose(client.infer("fruit", [tensor], model_version="1").as_numpy("out"), expected,
                               rtol=1e-5, atol=1e-6)  # no outputs named: all come back binary


@pytest.mark.parametrize("make, status, message", [
    (lambda: [_tensor(np.zeros((2, 7), np.float32))], "400", "input 'x' float32 [B, 5] got an array of shape [2, 7]"),
    (lambda: [_tensor(np.zeros((2, 5), np.int64), "INT64")], "400", "expects float32, got int64"),
    (lambda: [_tensor(np.full((2, 5), np.nan, np.float32))], "400", "NaN or Inf"),
    (lambda: [_tensor(np.zeros((2, 5), np.float32), name="y")], "400", "missing x; it has no input y"),
], ids=["shape", "dtype", "nan", "name"])
def test_bad_tensors_are_one_line_400s_and_the_server_goes_on(server, make, status, message):
    client = server["client"]
    with pytest.raises(InferenceServerException) as e:
        client.infer("fruit", make())
    assert e.value.status() == status and message in e.value.message() and "\n" not in e.value.message()
    ok = client.infer("fruit", [_tensor(np.ones((1, 5), np.float32))]).as_numpy("out")
    assert ok.shape == (1, 3) and server["proc"].poll() is None


def test_protocol_mistakes_and_unknown_models_are_4xx(server):
    client, port = server["client"], server["port"]
    with pytest.raises(InferenceServerException) as e:
        client.infer("apple", [_tensor(np.ones((1, 5), np.float32))])
    assert e.value.status() == "404" and "serves 'fruit'" in e.value.message()
    assert not client.is_model_ready("fruit", model_version="2")
    for body, words in ((b"{not json", "not JSON"), (b"[1, 2]", "JSON object"), (b"{}", "no 'inputs'"),
                        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
                        (json.dumps({"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32",
                                                 "data": [1, 2]}]}).encode(), "2 values for shape [1, 5]"),
                        (json.dumps({"inputs": [{"name": "x", "shape": [1, 5], "datatype": "STRING",
                                                 "data": [1]}]}).encode(), "datatype 'STRING'"),
                        (json.dumps({"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32",
                                                 "data": [1] * 5, "parameters": 7}]}).encode(), "'parameters'"),
                        (json.dumps({"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32",
                                                 "data": [1] * 5}], "outputs": [{"name": "nope"}]}).encode(),
                         "no output 'nope'")):
        code, answer = raw_post(port, "/v2/models/fruit/infer", body)
        assert code == 400 and words in answer["error"], (code, answer)
    assert client.is_server_ready() and server["proc"].poll() is None


def test_concurrent_requests_share_batches(server):
    client, session = server["client"], server["session"]
    before = client.get_inference_statistics("fruit")["model_stats"][0]
    x = np.random.default_rng(4).uniform(0, 10, (16, 5)).astype(np.float32)
    pending = [client.async_infer("fruit", [_tensor(x[i:i + 1])]) for i in range(16)]
    answers = np.concatenate([p.get_result(timeout=60).as_numpy("out") for p in pending])
    np.testing.assert_allclose(answers, session.run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)
    after = client.get_inference_statistics("fruit")["model_stats"][0]
    assert after["inference_count"] - before["inference_count"] == 16
    runs = after["execution_count"] - before["execution_count"]
    assert 1 <= runs < 16 and after["largest_batch"] > 1  # 16 one-row requests, fewer model runs


def test_plain_json_rows_in_the_csv_layout_give_class_names(server):
    from export import inputs
    from export.predict import OnnxRunner, top_k

    rows = fruit_rows(5, 7)
    payload = {"rows": [{"size": float(r[0]), "weight": float(r[1]), "color": r[2]} for r in rows]}
    code, answer = raw_post(server["port"], "/predict", json.dumps(payload).encode())
    assert code == 200, answer
    with open(server["folder"] / "same.csv", "w", newline="") as f:  # the same rows as `build predict` reads them
        csv.writer(f).writerows([["size", "weight", "color", "fruit"]] + rows)
    runner = OnnxRunner(server["model"], "cpu")
    arrays, _ = inputs.read_inputs(server["folder"] / "same.csv", runner.inputs, runner.layout)
    scores = runner.run(arrays)[0]
    idx, probs = top_k(scores, 3)
    for got, i, p in zip(answer["predictions"], idx, probs):
        assert got["label"] == ["apple", "pear", "plum"][i[0]]
        assert got["probabilities"][got["label"]] == pytest.approx(float(p[0]), abs=1e-5)
        assert sum(got["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    bad = {"rows": [{"size": 3, "weight": 90, "color": "purple"}]}
    code, answer = raw_post(server["port"], "/predict", json.dumps(bad).encode())
    assert code == 400 and "column 'color'" in answer["error"] and "purple" in answer["error"]
    code, answer = raw_post(server["port"], "/predict", json.dumps({"text": "hello"}).encode())
    assert code == 400 and "no vocabulary" in answer["error"]


def test_only_loopback_addresses(server, capsys):
    for host in ("0.0.0.0", "192.168.1.4", "example.com", "::"):
        assert main(["serve", str(server["model"]), "--host", host, "--port", "1"]) == 2
        assert "loopback addresses only" in capsys.readouterr().err
    assert main(["serve", str(server["model"]), "--port", str(server["port"])]) == 2  # taken by the server
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


def _tensor(array, datatype="FP32", name="x"):
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def test_serve_run_exports_the_runs_network_with_its_layout(server, tmp_path):
    """`build serve --run DIR` serves what `build export --run` writes: same answers, same CSV layout."""
    from builder.commands.serve import export_run
    from export.predict import OnnxRunner

    path = export_run(server["folder"] / "run", tmp_path)
    ours, theirs = OnnxRunner(path, "cpu"), OnnxRunner(server["model"], "cpu")
    assert ours.layout == theirs.layout and ours.layout["categories"]["color"] == sorted(COLORS)
    x = np.random.default_rng(5).uniform(0, 10, (3, 5)).astype(np.float32)
    np.testing.assert_allclose(ours.run({"x": x})[0], theirs.run({"x": x})[0], rtol=1e-6, atol=1e-6)
