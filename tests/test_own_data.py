"""Your own data, end to end (issue 12): scikit-learn's wine and diabetes written as ordinary CSV files
(a header, a text label column), trained, exported and predicted as a new user would; dirty CSVs; numbers
written as people write them; finished runs; `build evaluate`."""
from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import builder
from builder.commands.cli import main
from builder.data import load_data
from builder.core.errors import UserError
from builder.text.yaml_loader import load_yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
import own_csv  # noqa: E402  (examples/own_csv.py: the walkthrough these checks run on)

sys.path.remove(str(EXAMPLES))
WINE, WINE_NAMES = own_csv.WINE, own_csv.WINE_NAMES


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """The walkthrough run once: CSV files, specs, two trained runs, their ONNX files, predictions."""
    out = own_csv.main(runs=str(tmp_path_factory.mktemp("runs")))
    return types.SimpleNamespace(**out)


def test_own_csv_walkthrough(own):
    assert own.wine["accuracy_from_names"] >= 0.9 and own.diabetes["onnx_r2"] >= 0.30
    low, high = own.diabetes["prediction_range"]
    assert 25 < low and high < 346 and high - low > 100  # data units, not standardised ones
    assert (own.folder / "wine_eval" / "confusion_matrix.png").exists()


def test_numbers_are_read_as_people_write_them(tmp_path, capsys):
    forms = load_yaml("[1e-3, 3E-4, .5, -2.5e+3, +1.5e2, 10, 1.0, 1_000, v1e3, 1.2.3, .inf]")
    assert forms == [0.001, 0.0003, 0.5, -2500.0, 150.0, 10, 1.0, 1000, "v1e3", "1.2.3", float("inf")]
    assert all(type(v) is float for v in forms[:5]) and type(forms[5]) is int
    (tmp_path / "blocks.yaml").write_text(
        "spec: 1\nname: blocks\nblocks:\n  norm:\n    inputs: [x]\n    nodes:\n"
        "      ln: {op: LayerNorm, eps: 1e-5}\n      drop: {op: Dropout, p: .5}\n    outputs: [drop]\n")
    spec = tmp_path / "s.yaml"
    spec.write_text("spec: 1\nname: s\nuse: [blocks.yaml]\ninputs: {x: {shape: [B, 2]}}\n"
                    "nodes:\n  n: {block: norm}\n  out: {op: Linear, out_features: 1}\n"
                    "train:\n  data: {source: toy_linear, n: 64}\n  optimizer: {type: adam, lr: 1e-3, weight_decay: 5E-4}\n"
                    "  early_stopping: {min_delta: 1e-4}\n")
    loaded = builder.load(spec)
    assert loaded.training.optimizer == {"type": "adam", "lr": 0.001, "weight_decay": 0.0005}
    assert loaded.training.early_stopping.min_delta == 1e-4
    module = builder.build(loaded)
    assert module.get_submodule("n.ln").eps == 1e-5 and module.get_submodule("n.drop").p == 0.5
    for value, expected in (("1e-3", 0.001), ("2.5e+3", 2500.0), (".5", 0.5)):
        assert main(["check", str(spec), "--set", f"train.optimizer.lr={value}"]) == 0
        over = builder.load(spec, overrides=dict([builder.spec.reader.parse_override(f"train.optimizer.lr={value}")]))
        assert over.training.optimizer["lr"] == expected
    _, history, _ = builder.train(spec, run_dir=tmp_path / "run", quiet=True, epochs=1)
    assert history[0]["lr"] == 0.001


@pytest.mark.parametrize("text, options, message", [
    ("a,b,y\n1,2,3\n4,5\n", {}, "dirty.csv:3: row has 2 fields, the header has 3 ('4,5')"),
    ("a,b,y\n1,2,3\nn/a,5,6\n", {}, "dirty.csv:3: column 'a': missing value 'n/a' (fill it, or set missing: drop "
                                    "or missing: mean)"),
    ("a,b,y\n1,2,3\n\n4,oops,6\n", {}, "dirty.csv:4: column 'b': 'oops' is not a number (the column's other "
                                       "values are numbers; to treat it as a category, list it in categorical: [b])"),
    ("a;b;y\n1;2;3\n", {}, "has no column 'y' (columns: a;b;y); the header looks ';'-separated: set delimiter: ';'"),
    ("a,b,y\n1,2,3\n4,5,\n", {"missing": "mean"}, "dirty.csv:3: column 'y': missing value '' (mean fills numeric feature "
                                           "columns only; fill it, or set missing: drop)"),
])
def test_dirty_csvs_name_file_line_column_and_value(tmp_path, text, options, message):
    (tmp_path / "dirty.csv").write_text(text)
    with pytest.raises(UserError) as e:
        load_data({"source": "csv", "path": str(tmp_path / "dirty.csv"), "target": "y", **options})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_dirty_csv_through_build_train_is_one_line_exit_2(own, tmp_path, capsys):
    lines = (own.folder / "wine_train.csv").read_text().splitlines()
    cells = lines[5].split(",")
    lines[5] = ",".join(cells[:2] + [""] + cells[3:])  # an empty cell in column 3, line 6
    (tmp_path / "wine_train.csv").write_text("\n".join(lines) + "\n")
    spec = tmp_path / "wine.yaml"
    spec.write_text(WINE.replace("DIR/wine_train", f"{tmp_path}/wine_train").replace("DIR", str(own.folder)))
    assert main(["train", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
    assert not (tmp_path / "run").exists()  # nothing half-written
    err = capsys.readouterr().err.strip()
    column = lines[0].split(",")[2]
    assert err == f"{tmp_path}/wine_train.csv:6: column '{column}': missing value '' (fill it, or set " \
                  "missing: drop or missing: mean)"


def test_missing_values_dropped_or_filled_and_delimiters(tmp_path):
    (tmp_path / "m.csv").write_text("a;b;y\n1;2;3\n;4;5\n3;NA;7\n5;8;9\n")
    base = {"source": "csv", "path": str(tmp_path / "m.csv"), "target": "y", "delimiter": ";", "split": [1.0],
            "split_shuffle": False}
    dropped = load_data({**base, "missing": "drop"})
    assert dropped.train.fields[0].tolist() == [[1, 2], [5, 8]] and dropped.train.fields[1].tolist() == [[3], [9]]
    filled = load_data({**base, "missing": "mean"})
    assert filled.train.fields[0].numpy() == pytest.approx(np.array([[1, 2], [3, 4], [3, 14 / 3], [5, 8]]))
    assert filled.info["layout"]["fill"] == {"a": 3.0, "b": pytest.approx(14 / 3)}
    # a column of numbers stays numeric; a text-only column is categorical; a declared one is too
    (tmp_path / "c.csv").write_text("n,t,k,y\n1,red,7,0\n2,blue,8,1\n3,red,7,0\n")
    d = load_data({"source": "csv", "path": str(tmp_path / "c.csv"), "target": "y", "categorical": ["k"],
                   "split": [1.0], "split_shuffle": False})
    assert d.info["layout"]["kinds"] == {"n": "number", "t": "category", "k": "category", "y": "number"}
    assert d.train.fields[0].tolist()[0] == [1, 0, 1, 1, 0]  # n; t: blue, red; k: 7, 8
    (tmp_path / "unseen.csv").write_text("n,t,k,y\n1,green,7,0\n")
    with pytest.raises(UserError, match=r"unseen.csv:2: column 't': category 'green' was not seen in training "
                                        r"\(known: 'blue', 'red'\)"):
        load_data({"source": "csv", "target": "y", "categorical": ["k"],
                   "files": {"train": str(tmp_path / "c.csv"), "test": str(tmp_path / "unseen.csv")}})


def test_regression_deploys_in_data_units(own, tmp_path, capsys):
    run = own.diabetes["run"]
    truth = own.diabetes_test
    test = json.loads((run / "test.json").read_text())
    assert test["mae"] > 20 and test["r2"] > 0.3  # targets 25..346: data units, not standardised ones
    prep = json.loads((run / "preparation.json").read_text())
    assert prep["output_preparation"]["out"]["mean"] == pytest.approx(152, abs=10)
    onnx_path = own.diabetes["onnx"]
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(meta["builder.data"])["outputs_in_data_units"] is True
    with open(own.folder / "diabetes_test.csv") as f:
        x = np.array([[float(v) for v in row[:-1]] for row in list(csv.reader(f))[1:]], np.float32)
    pred = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0][:, 0]
    r2 = 1 - ((pred - truth) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert r2 >= 0.30 and r2 == pytest.approx(test["r2"], abs=1e-4)
    capsys.readouterr()
    out_csv = tmp_path / "pred.csv"
    assert main(["predict", str(onnx_path), "--input", str(own.folder / "diabetes_test.csv"), "-o", str(out_csv)]) == 0
    assert f"r2 {r2:.4f}" in capsys.readouterr().err
    lines = out_csv.read_text().splitlines()
    assert lines[0] == "prediction" and np.allclose([float(v) for v in lines[1:]], pred, rtol=1e-5)


def test_classifier_prints_class_names_from_the_onnx_file(own, tmp_path, capsys):
    run, onnx_path = own.wine["run"], own.wine["onnx"]
    capsys.readouterr()
    test_csv = own.folder / "wine_test.csv"
    with open(test_csv) as f:
        truth = [row[-1] for row in list(csv.reader(f))[1:]]
    assert main(["predict", str(onnx_path), "--input", str(test_csv), "--top-k", "3"]) == 0
    out = capsys.readouterr()
    rows = out.out.strip().splitlines()
    names = [r.split(": ", 1)[1].split(" (")[0] for r in rows[:20]]
    assert set(names) <= set(WINE_NAMES) and np.mean([a == b for a, b in zip(names, truth)]) >= 0.9
    assert rows[0].count("(") == 3 and "accuracy" in out.err
    # -o out.csv: a header, the class name, one probability per class (ids in sorted name order)
    assert main(["predict", str(onnx_path), "--input", str(test_csv), "-o", str(tmp_path / "p.csv")]) == 0
    with open(tmp_path / "p.csv") as f:
        table = list(csv.reader(f))
    assert table[0] == ["prediction", "prob_barbera", "prob_grignolino", "prob_nebbiolo"]
    assert np.mean([r[0] == t for r, t in zip(table[1:], truth)]) >= 0.9
    assert np.allclose([sum(map(float, r[1:])) for r in table[1:]], 1, atol=1e-4)
    # the same through torch from the run folder
    capsys.readouterr()
    assert main(["predict", str(own.specs["wine"]), "--run", str(run), "--input", str(test_csv)]) == 0
    torch_rows = capsys.readouterr().out.strip().splitlines()
    assert [r.split(" (")[0] for r in torch_rows[:20]] == [r.split(" (")[0] for r in rows[:20]]


def test_labels_that_disagree_with_the_data_are_an_error_naming_both(own, tmp_path, capsys):
    spec = tmp_path / "wine.yaml"
    spec.write_text(WINE.replace("\ntrain:", f"\nlabels: {WINE_NAMES}\ntrain:", 1).replace("DIR", str(own.folder)))
    assert main(["train", str(spec), "--run-dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == (
        "labels: ['nebbiolo', 'grignolino', 'barbera'] disagree with the data's classes ['barbera', "
        "'grignolino', 'nebbiolo'] (class id i is the i-th of the data's classes; write labels in that order, "
        "or leave them out)")
    spec.write_text(WINE.replace("\ntrain:", f"\nlabels: {sorted(WINE_NAMES)}\ntrain:", 1).replace("DIR", str(own.folder)))
    assert main(["train", str(spec), "--run-dir", str(tmp_path / "run"), "--epochs", "1", "--quiet"]) == 0
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["class_labels"] == sorted(WINE_NAMES)


def test_build_evaluate_writes_metrics_and_a_confusion_matrix(own, tmp_path, capsys):
    from sklearn.metrics import confusion_matrix, f1_score

    out = tmp_path / "eval"
    test_csv = own.folder / "wine_test.csv"
    assert main(["evaluate", str(own.specs["wine"]), "--run", str(own.wine["run"]), "--data",
                 str(test_csv), "-o", str(out)]) == 0
    assert main(["predict", str(own.specs["wine"]), "--run", str(own.wine["run"]), "--input", str(test_csv),
                 "-o", str(tmp_path / "p.csv")]) == 0
    with open(test_csv) as f:
        truth = [row[-1] for row in list(csv.reader(f))[1:]]
    with open(tmp_path / "p.csv") as f:
        guess = [row[0] for row in list(csv.reader(f))[1:]]
    names = sorted(WINE_NAMES)
    with open(out / "confusion_matrix.csv") as f:
        table = list(csv.reader(f))
    assert table[0][1:] == names and [r[0] for r in table[1:]] == names
    assert [[int(v) for v in r[1:]] for r in table[1:]] == confusion_matrix(truth, guess, labels=names).tolist()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["f1_macro"] == pytest.approx(f1_score(truth, guess, average="macro"))
    assert set(metrics["per_class"]) == set(names) and metrics["rows"] == len(truth)
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_finished_run_resumes_to_nothing_and_quiet_keeps_the_results(tmp_path, capsys):
    run = tmp_path / "xor"
    assert main(["train", "specs/xor_mlp.yaml", "--run-dir", str(run), "--epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == f"run folder: {run}" and out.err.startswith("test: loss ")
    assert "%|" not in out.err  # no progress bars off a terminal
    before = (run / "metrics.csv").read_bytes()
    assert main(["train", "--resume", str(run)]) == 0
    out = capsys.readouterr()
    assert f"{run} is finished: it trained 2 of 2 epochs; nothing to train" in out.err
    assert (run / "metrics.csv").read_bytes() == before
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    assert len((run / "metrics.csv").read_text().splitlines()) == 4  # header + 3 epochs


def test_early_stopping_min_delta_and_ties_broken_by_val_loss(tmp_path):
    from builder.training.runlog import Console
    from builder.training.book import Book
    from builder.spec.train_section import from_plain

    cfg = from_plain({"data": "xor", "early_stopping": {"monitor": "val.accuracy", "patience": 2, "min_delta": 0.05}},
                     ["model"])
    book = Book(cfg, tmp_path, Console(quiet=True), types.SimpleNamespace(is_main=False), 0, False, None, False)
    rows = [(0.9, 0.5), (0.9, 0.4), (0.93, 0.3), (0.8, 0.6)]
    stops = [book.epoch_end({"epoch": i + 1, "val.accuracy": a, "val.loss": loss}) for i, (a, loss) in enumerate(rows)]
    assert stops == [False, False, False, True] and book.best_epoch == 2  # the tie with a lower loss wins


def test_metrics_and_class_weights_match_scikit_learn():
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
    from sklearn.utils.class_weight import compute_class_weight

    from builder.training.losses import _class_weights
    from builder.training.metrics import make_metric

    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(300, 3, generator=g), torch.randint(0, 3, (300,), generator=g)
    for name, reference in (("f1", f1_score), ("precision", precision_score), ("recall", recall_score)):
        _, metric = make_metric(name)
        metric.update(logits[:100], target[:100])
        metric.update(logits[100:], target[100:])
        assert metric.value() == pytest.approx(reference(target, logits.argmax(1), average="macro"))
    two = torch.randn(400, 2, generator=g)
    labels = (two[:, 1] - two[:, 0] + torch.randn(400, generator=g) > 0).long()
    _, auc = make_metric("auc")
    auc.update(two, labels)
    assert auc.value() == pytest.approx(roc_auc_score(labels, two.softmax(-1)[:, 1]), abs=2e-3)
    weights = _class_weights("balanced", lambda: torch.tensor([0, 0, 0, 1, 2, 2]))
    assert weights.tolist() == pytest.approx(compute_class_weight("balanced", classes=np.arange(3),
                                                                  y=[0, 0, 0, 1, 2, 2]).tolist())
    with pytest.raises(UserError, match="weight must be 'balanced' or a list"):
        _class_weights("heavy", None)


def test_curves_mark_the_kept_epoch(tmp_path):
    from builder.training.runlog import RunFolder

    history = [{"epoch": i, "train.loss": 1 / i, "val.loss": 1 / i + (i - 2) ** 2, "seconds": 0.1} for i in (1, 2, 3)]
    pictures = {}
    for kept in (None, 2):
        folder = RunFolder(tmp_path / str(kept))
        folder.plot(history, kept)
        pictures[kept] = (tmp_path / str(kept) / "curves.png").read_bytes()
        folder.release()
    assert pictures[None] != pictures[2]


def test_sizes_come_from_the_data(own, tmp_path, capsys):
    spec = tmp_path / "auto.yaml"
    spec.write_text(WINE.replace("[B, 13]", "[B, auto]").replace("out_features: 3", "out_features: ${data.num_classes}")
                    .replace("DIR", str(own.folder)))
    assert main(["check", str(spec)]) == 0  # sizes read from train.data, as build train reads them
    assert capsys.readouterr().out == f"OK wine: 3 nodes, {13 * 16 + 16 + 16 * 3 + 3:,} parameters " \
        f"({13 * 16 + 16 + 16 * 3 + 3:,} trainable)\n"
    no_data = tmp_path / "no_data.yaml"
    no_data.write_text(spec.read_text().split("train:")[0])
    assert main(["check", str(no_data)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{no_data}:3:14: error: x: input 'x': `auto` comes from the training data: `build train` and `build check` "
        "read it from train.data (without train.data: --set data.num_features=N)",
        f"{no_data}:7:21: error: out: ${{data.num_classes}} comes from the training data: `build train` and `build "
        "check` read it from train.data (without train.data: --set data.num_classes=N)"]
    assert main(["check", str(no_data), "--set", "data.num_features=13", "--set", "data.num_classes=3"]) == 0
    assert main(["train", str(spec), "--run-dir", str(tmp_path / "run"), "--epochs", "1", "--quiet"]) == 0
    resolved = (tmp_path / "run" / "resolved.yaml").read_text()
    assert "data.num_features: 13\n  data.num_classes: 3\n" in resolved
    weights = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["networks"]["model"]
    assert weights["hidden.weight"].shape == (16, 13) and weights["out.weight"].shape == (3, 16)
    assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "2", "--quiet"]) == 0


def test_predict_reads_a_csv_as_the_training_file_was_read(tmp_path, capsys):
    """Delimiter, category vocabulary and fill values travel to `build predict`; an unseen category and a
    missing value under `missing: drop` are errors there (every row gets its prediction)."""
    rng = np.random.default_rng(0)
    rows = ["size;colour;score"] + [f"{s:.2f};{c};{s * (2 if c == 'red' else -1):.3f}"
                                    for s, c in zip(rng.uniform(1, 5, 200), rng.choice(["red", "blue"], 200))]
    rows[3] = "n/a;red;1.0"
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    spec = tmp_path / "s.yaml"
    spec.write_text(f"spec: 1\nname: s\ninputs: {{x: {{shape: [B, auto]}}}}\nnodes:\n  h: {{op: Linear, out_features: 16}}\n"
                    f"  a: {{op: ReLU}}\n  out: {{op: Linear, out_features: 1}}\ntrain:\n  data: {{source: csv, path: "
                    f"{tmp_path}/t.csv, target: score, delimiter: ';', missing: mean, split: [1.0]}}\n"
                    "  optimizer: {type: adam, lr: 3e-2}\n  epochs: 30\n")
    assert main(["train", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    (tmp_path / "new.csv").write_text("size;colour\n2;red\n;blue\n4;blue\n")
    assert main(["predict", str(spec), "--run", str(tmp_path / "run"), "--input", str(tmp_path / "new.csv"),
                 "-o", str(tmp_path / "p.csv")]) == 0
    values = [float(v) for v in (tmp_path / "p.csv").read_text().split()[1:]]
    assert values[0] == pytest.approx(4, abs=0.6) and values[2] == pytest.approx(-4, abs=0.6) and len(values) == 3
    (tmp_path / "bad.csv").write_text("size;colour\n2;green\n")
    capsys.readouterr()
    assert main(["predict", str(spec), "--run", str(tmp_path / "run"), "--input", str(tmp_path / "bad.csv")]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "bad.csv:2: column 'colour': category 'green' was not seen in training (known: 'blue', 'red')")
