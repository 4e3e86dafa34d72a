"""Issue 20 item 15: files that were read wrong without a word. A BOM or a missing value in the first row of
a CSV no longer drops that row in `build predict`; a duplicated column name is an error (it replaced the
first column); labels outside the model's classes are an error in `build evaluate` (they counted in the
accuracy but not in the confusion matrix); a vocab.json / tokenizer.json that disagrees with the checkpoint's
vocabulary is an error, not used anyway."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from builder.commands.cli import main
from builder.core.errors import UserError
from builder.data import tokenizer
from builder.data.files import MISSING, read_csv
from export.inputs import ModelInput, read_arrays

LINEAR = """spec: 1
name: lin
inputs: {x: {shape: [B, 3]}}
nodes:
  out: {op: Linear, out_features: 4}
"""


@pytest.fixture(scope="module")
def lin_onnx(tmp_path_factory):
    """A 3 -> 4 Linear exported with random weights (classes 0..3)."""
    folder = tmp_path_factory.mktemp("lin")
    (folder / "lin.yaml").write_text(LINEAR)
    assert main(["export", str(folder / "lin.yaml"), "--random", "-o", str(folder / "lin.onnx")]) == 0
    return folder / "lin.onnx"


def _table(rng):
    n, f = rng.randint(1, 6), rng.randint(1, 4)
    return np.array([[round(rng.uniform(-9, 9), 3) for _ in range(f)] for _ in range(n)])


def _text(values, rng, header, bom, blanks):
    lines = ([",".join(f"col{j}" for j in range(values.shape[1]))] if header else [])
    lines += [",".join(f"{v:g}" for v in row) for row in values]
    if blanks:
        lines.insert(rng.randint(0, len(lines)), "")
    return ("\ufeff" if bom else "") + "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(40))
def test_every_row_of_a_numeric_csv_is_read_or_refused_never_dropped(tmp_path, seed):
    rng = random.Random(seed)
    values = _table(rng)
    header, bom, blanks = rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.3
    path = tmp_path / "x.csv"
    path.write_text(_text(values, rng, header, bom, blanks), encoding="utf-8")
    inp = [ModelInput("x", (None, values.shape[1]), "float32")]
    np.testing.assert_allclose(read_arrays(path, inp)["x"], values)
    # one missing cell anywhere, the first data row included: refused with its line, not skipped
    i, j = rng.randrange(len(values)), rng.randrange(values.shape[1])
    marker = rng.choice(sorted(MISSING - {"", "nan"}) + ["NA", "N/A"])
    cells = [[f"{v:g}" for v in row] for row in values]
    cells[i][j] = marker
    lines = ([",".join(f"col{k}" for k in range(values.shape[1]))] if header else []) + [",".join(r) for r in cells]
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as info:
        read_arrays(path, inp)
    assert str(info.value).startswith(f"{path}:{i + 1 + header}: missing value {marker!r}")


def test_build_predict_gives_one_output_per_row_of_a_csv_with_a_bom(tmp_path, capsys, lin_onnx):
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf1,2,3\n4,5,6\n7,8,9\n")
    assert main(["predict", str(lin_onnx), "--input", str(tmp_path / "bom.csv"),
                 "-o", str(tmp_path / "out.npy")]) == 0
    assert np.load(tmp_path / "out.npy").shape == (3, 4)
    (tmp_path / "na.csv").write_text("1,NA,3\n4,5,6\n7,8,9\n")
    capsys.readouterr()
    assert main(["predict", str(lin_onnx), "--input", str(tmp_path / "na.csv")]) == 2
    assert capsys.readouterr().err.strip().endswith("na.csv:1: missing value 'NA': every row gets a prediction, "
                                                    "so fill it (or drop the row)")


@pytest.mark.parametrize("seed", range(15))
def test_a_duplicated_column_name_is_an_error_naming_both_columns(tmp_path, seed):
    rng = random.Random(seed)
    names = [f"c{i}" for i in range(rng.randint(2, 6))] + ["y"]
    a, b = sorted(rng.sample(range(len(names)), 2))
    names[b] = names[a]
    rows = [",".join(names)] + [",".join(str(rng.randint(0, 9)) for _ in names) for _ in range(3)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    target = "y" if "y" in names else None
    with pytest.raises(UserError) as info:
        read_csv(tmp_path / "d.csv", target=target)
    assert str(info.value) == (f"{tmp_path / 'd.csv'}:1: column name {names[a]!r} appears twice (columns {a + 1} "
                               f"and {b + 1}): rename one")


@pytest.mark.parametrize("seed", range(6))
def test_evaluate_refuses_labels_outside_the_models_classes(tmp_path, capsys, seed, lin_onnx):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 30))
    x, y = rng.normal(size=(n, 3)).astype(np.float32), rng.integers(0, 4, n)
    np.savez(tmp_path / "ok.npz", x=x, y=y)
    assert main(["evaluate", str(lin_onnx), "--data", str(tmp_path / "ok.npz"),
                 "-o", str(tmp_path / "ev")]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    matrix = np.loadtxt(tmp_path / "ev" / "confusion_matrix.csv", delimiter=",", skiprows=1,
                        usecols=range(1, 5), dtype=int)
    assert matrix.sum() == n and np.trace(matrix) / n == pytest.approx(metrics["accuracy"])
    bad = rng.choice(n, size=int(rng.integers(1, n)), replace=False)
    y[bad] = rng.choice([-1, 4, 7, 100], size=len(bad))
    np.savez(tmp_path / "bad.npz", x=x, y=y)
    capsys.readouterr()
    assert main(["evaluate", str(lin_onnx), "--data", str(tmp_path / "bad.npz"),
                 "-o", str(tmp_path / "ev2")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{len(bad)} label(s) outside the model's 4 classes (ids 0..3)" in err and len(err.splitlines()) == 1
    assert f"the first in sample {int(np.sort(bad)[0])}" in err
    assert not (tmp_path / "ev2").exists()


def test_a_vocabulary_file_that_disagrees_with_the_checkpoint_is_an_error(tmp_path):
    vocab = list(" abcdefgh")
    checkpoint = {"vocab": vocab}
    run = tmp_path / "run"
    run.mkdir()
    (run / "vocab.json").write_text(json.dumps(vocab))
    assert tokenizer.find(None, run, checkpoint).vocab == vocab  # the same: used
    rng = random.Random(0)
    for _ in range(10):
        other = list(vocab)
        if rng.random() < 0.5:
            i, j = rng.sample(range(len(other)), 2)
            other[i], other[j] = other[j], other[i]
        else:
            other = other[:rng.randint(1, len(other) - 1)] if rng.random() < 0.5 else other + ["z"]
        (run / "vocab.json").write_text(json.dumps(other))
        with pytest.raises(UserError, match="its vocabulary differs from the one the checkpoint was trained with"):
            tokenizer.find(None, run, checkpoint)
        with pytest.raises(UserError, match=r"drop --tokenizer"):
            tokenizer.find(run / "vocab.json", None, checkpoint)
    text = "the quick brown fox jumps over the lazy dog " * 20
    bpe_a = tokenizer.train_bpe(text, {"type": "bpe", "vocab_size": 280})
    bpe_b = tokenizer.train_bpe(text + "zebra zebu " * 30, {"type": "bpe", "vocab_size": 280})
    (run / "vocab.json").unlink()
    (run / "tokenizer.json").write_text(bpe_b.file()[1])
    with pytest.raises(UserError, match=r"tokenizer.json: its vocabulary differs .*id \d+ is"):
        tokenizer.find(None, run, bpe_a.state())
    (run / "tokenizer.json").write_text(bpe_a.file()[1])
    assert tokenizer.find(None, run, bpe_a.state()).size == bpe_a.size
