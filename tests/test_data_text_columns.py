"""Text columns (issue 23): `text: [review]` on a CSV tokenises the column (WordPiece or BPE trained on the
training split, or a given tokenizer.json) into ids and a mask, named inputs; the tokenizer travels with the
checkpoint and ONNX, and predict/evaluate take raw text in a CSV (unseen sentences included)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from builder.commands.cli import main
from builder.core.errors import UserError
from builder.data import load_data

GOOD = ["great", "lovely", "superb", "wonderful", "enjoyable", "excellent"]
BAD = ["awful", "boring", "dreadful", "terrible", "dull", "poor"]
FILL = ["the film was", "this book is", "our stay was", "the service felt", "honestly it was", "overall quite"]


def reviews(path, n=120, seed=0):
    rng = np.random.default_rng(seed)
    lines = ["review,stars,label"]
    for i in range(n):
        positive = i % 2 == 0
        words = GOOD if positive else BAD
        text = f"{FILL[rng.integers(len(FILL))]} {words[rng.integers(len(words))]}, {FILL[rng.integers(len(FILL))]} {words[rng.integers(len(words))]}"
        lines.append(f"\"{text}\",{rng.integers(1, 6)},{'pos' if positive else 'neg'}")
    path.write_text("\n".join(lines) + "\n")


SPEC = """spec: 1
name: reviews
inputs:
  review: {shape: [B, 16], dtype: int64}
nodes:
  emb: {op: Embedding, num_embeddings: "${data.vocab_size}", embedding_dim: 16, padding_idx: 0}
  pooled: {op: mean, dim: 1}
  out: {op: Linear, out_features: 2}
train:
  data: {source: csv, path: PATH, target: label, drop: [stars], text: [review], max_length: 16,
         tokenizer: TOKENIZER, split: [0.7, 0.3], batch_size: 16}
  loss: cross_entropy
  optimizer: {type: adam, lr: 0.05}
  metrics: [accuracy]
  epochs: 6
"""


def test_text_column_classifier_end_to_end(tmp_path, capsys):
    reviews(tmp_path / "r.csv")
    spec = tmp_path / "r.yaml"
    spec.write_text(SPEC.replace("PATH", str(tmp_path / "r.csv")).replace("TOKENIZER", "{type: wordpiece, vocab_size: 200}"))
    assert main(["train", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["export", str(spec), "--run", str(tmp_path / "run"), "-o", str(tmp_path / "m.onnx")]) == 0
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    carried = json.loads(props["builder.data"])["layout"]["text"]["review"]
    assert carried["max_length"] == 16 and '"WordPiece"' in carried["tokenizer"]
    # unseen sentences: new wording around the same sentiment words
    (tmp_path / "new.csv").write_text("review,stars,label\n\"a truly wonderful evening, superb\",5,pos\n"
                                      "\"what a dreadful idea, so dull\",1,neg\n\"excellent, never seen before\",4,pos\n")
    for source in ([str(tmp_path / "m.onnx")], [str(spec), "--run", str(tmp_path / "run")]):
        capsys.readouterr()
        assert main(["predict", *source, "--input", str(tmp_path / "new.csv")]) == 0
        out = capsys.readouterr().out.splitlines()
        assert [line.split(" ")[1] for line in out] == ["pos", "neg", "pos"], out
        assert main(["evaluate", *source, "--data", str(tmp_path / "new.csv"), "-o", str(tmp_path / "ev")]) == 0
        assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["accuracy"] == 1.0


def test_tokenizer_sees_only_the_training_split_and_a_given_file_is_used(tmp_path):
    reviews(tmp_path / "r.csv", n=40)
    cfg = {"source": "csv", "path": str(tmp_path / "r.csv"), "target": "label", "drop": ["stars"], "text": ["review"],
           "max_length": 12, "tokenizer": {"type": "bpe", "vocab_size": 300}, "split": [0.5, 0.5], "split_shuffle": False}
    data = load_data(cfg)
    assert data.info["inputs"] == ["review", "review_mask"] and data.train.n_inputs == 2
    ids, mask = data.train.fields[0], data.train.fields[1]
    assert ids.shape == (20, 12) and set(mask.unique().tolist()) <= {0, 1}
    from tokenizers import Tokenizer
    tok = Tokenizer.from_str(data.info["layout"]["text"]["review"]["tokenizer"])
    assert (ids[mask == 0] == tok.token_to_id("[PAD]")).all()
    # a word only in the val rows is not a token of its own: the tokenizer never saw it
    lines = (tmp_path / "r.csv").read_text().splitlines()
    lines[-1] = '"zzyzxqq zzyzxqq zzyzxqq zzyzxqq",3,neg'
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    tok = Tokenizer.from_str(load_data(cfg).info["layout"]["text"]["review"]["tokenizer"])
    assert "zzyzxqq" not in "".join(tok.get_vocab())
    (tmp_path / "tok.json").write_text(tok.to_str())
    given = load_data({**cfg, "tokenizer": str(tmp_path / "tok.json")})
    assert given.info["layout"]["text"]["review"]["tokenizer"] == tok.to_str()


@pytest.mark.parametrize("extra, words", [
    ({"tokenizer": {"type": "sentencepiece"}}, "train.data.tokenizer: a tokenizer.json path"),
    ({"max_length": 0}, "train.data.max_length"),
    ({"tokenizer": "missing.json"}, "no such tokenizer.json"),
    ({"text": ["nope"]}, "has no column 'nope'"),
])
def test_bad_text_keys_are_one_line(tmp_path, extra, words):
    reviews(tmp_path / "r.csv", n=10)
    cfg = {"source": "csv", "path": str(tmp_path / "r.csv"), "target": "label", "text": ["review"], **extra}
    with pytest.raises(UserError, match=words.replace("(", r"\(")):
        load_data(cfg)


MASKED = """spec: 1
name: masked
inputs:
  review: {shape: [B, 16], dtype: int64}
  review_mask: {shape: [B, 16], dtype: int64}
nodes:
  emb: {op: Embedding, in: review, num_embeddings: "${data.vocab_size}", embedding_dim: 8}
  m: {op: cast, in: review_mask, dtype: float32}
  m3: {op: unsqueeze, in: m, dim: -1}
  kept: {op: mul, in: [emb, m3]}
  total: {op: sum, in: kept, dim: 1}
  count: {op: sum, in: m, dim: 1, keepdim: true}
  safe: {op: clamp, in: count, min: 1.0}
  pooled: {op: div, in: [total, safe]}
  out: {op: Linear, out_features: 2}
train:
  data: {source: csv, path: PATH, target: label, drop: [stars], text: [review], max_length: 16, split: [0.7, 0.3]}
  loss: cross_entropy
  optimizer: {type: adam, lr: 0.05}
  metrics: [accuracy]
  epochs: 4
"""


def test_ids_and_mask_feed_two_named_inputs_through_onnx(tmp_path, capsys):
    """A masked mean over the tokens: the mask is a second input of the spec, fed by name in train, export
    and evaluate."""
    reviews(tmp_path / "r.csv")
    spec = tmp_path / "m.yaml"
    spec.write_text(MASKED.replace("PATH", str(tmp_path / "r.csv")))
    assert main(["train", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["export", str(spec), "--run", str(tmp_path / "run"), "-o", str(tmp_path / "m.onnx")]) == 0
    (tmp_path / "new.csv").write_text("review,stars,label\n\"wonderful\",5,pos\n\"terrible, just terrible\",1,neg\n")
    assert main(["evaluate", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "new.csv"), "-o", str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["accuracy"] == 1.0


def test_a_trained_tokenizer_is_the_same_in_every_process(tmp_path):
    """The same training texts give the same ids in every process, for both tokenizer types (Hugging Face's
    WordPieceTrainer numbered tokens by a randomly seeded hash map: a different model per process, found
    when this file's two-input test failed in one CI worker and passed alone)."""
    import subprocess
    import sys

    reviews(tmp_path / "r.csv")
    code = ("import csv, json, sys; from builder.data.text_columns import train; "
            "texts = [r['review'] for r in csv.DictReader(open(sys.argv[1]))]; "
            "print(json.dumps([sorted(train(texts, {'type': t}).get_vocab().items()) for t in ('wordpiece', 'bpe')]))")
    root = Path(__file__).resolve().parents[1]
    env = {**__import__("os").environ, "PYTHONPATH": str(root)}
    outs = {subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.csv")], capture_output=True, text=True,
                           env=env, check=True).stdout for _ in range(4)}
    assert len(outs) == 1
    wordpiece = dict(json.loads(outs.pop())[0])
    assert wordpiece["[PAD]"] == 0 and "terrible" in wordpiece and "##t" in wordpiece
