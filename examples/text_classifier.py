"""A free-text column, end to end: a CSV of reviews -> a tokenizer trained on the training rows -> ONNX ->
predictions on new sentences.

    python examples/text_classifier.py              # runs/examples/text_classifier/

`text: [review]` turns the column into token ids and a mask (a WordPiece trained on the training split
with Hugging Face `tokenizers`); the tokenizer travels with the model, so `build predict` reads a CSV of
raw sentences it never saw, and `${data.vocab_size}` sizes the embedding.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from own_csv import build

GOOD = ["great", "lovely", "superb", "wonderful", "enjoyable", "excellent", "charming", "brilliant"]
BAD = ["awful", "boring", "dreadful", "terrible", "dull", "poor", "tedious", "clumsy"]
OPENERS = ["the film was", "this book is", "our stay was", "the service felt", "honestly it was",
           "overall quite", "the ending is", "i found it"]

SPEC = """spec: 1
name: reviews
inputs:
  review: {shape: [B, 24], dtype: int64}
nodes:
  emb: {op: Embedding, num_embeddings: "${data.vocab_size}", embedding_dim: 16, padding_idx: 0}
  pooled: {op: mean, dim: 1}
  out: {op: Linear, out_features: 2}
train:
  data: {source: csv, path: DIR/reviews.csv, target: sentiment, text: [review], max_length: 24,
         tokenizer: {type: wordpiece, vocab_size: 300}, split: [0.7, 0.15, 0.15], batch_size: 16, seed: 0}
  loss: cross_entropy
  optimizer: {type: adam, lr: 0.03}
  metrics: [accuracy]
  epochs: 8
"""


def sentence(rng, words):
    return f"{OPENERS[rng.integers(len(OPENERS))]} {words[rng.integers(len(words))]}, " \
           f"{OPENERS[rng.integers(len(OPENERS))]} {words[rng.integers(len(words))]}"


def write_reviews(path: Path, n: int, seed: int):
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        for i in range(n):
            positive = i % 2 == 0
            writer.writerow([sentence(rng, GOOD if positive else BAD), "positive" if positive else "negative"])


def main(runs="runs/examples", epochs=None, rows=300):
    folder = Path(runs) / "text_classifier"
    folder.mkdir(parents=True, exist_ok=True)
    write_reviews(folder / "reviews.csv", rows, seed=0)
    (folder / "new.csv").write_text("review,sentiment\n\"a brilliant, charming evening\",positive\n"
                                    "\"what a tedious and clumsy plot\",negative\n"
                                    "\"superb acting, i loved it\",positive\n\"dull from start to end\",negative\n")
    spec = folder / "reviews.yaml"
    spec.write_text(SPEC.replace("DIR", str(folder)))
    more = ["--epochs", epochs] if epochs else []
    build("train", spec, "--run-dir", folder / "run", "--overwrite", "--quiet", *more)
    build("export", spec, "--run", folder / "run", "-o", folder / "reviews.onnx")
    build("predict", folder / "reviews.onnx", "--input", folder / "new.csv", "-o", folder / "predicted.csv")
    build("evaluate", folder / "reviews.onnx", "--data", folder / "new.csv", "-o", folder / "evaluation")
    predicted = [line.split(",")[0] for line in (folder / "predicted.csv").read_text().splitlines()[1:]]
    test = json.loads((folder / "run" / "test.json").read_text())
    print(f"test split accuracy {test['accuracy']:.3f}; new sentences: {predicted}")
    return {"predicted": predicted, "test": test, "folder": folder}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="train this many epochs (default: the spec's own)")
    parser.add_argument("--runs", default="runs/examples", help="where the files and run folders go")
    args = parser.parse_args()
    main(runs=args.runs, epochs=args.epochs)
