"""Chapter 2, classification: softmax regression on scikit-learn's 1,797 real 8x8 digits.

One Linear(64 -> 10) layer gives ten scores; the cross-entropy loss turns them into probabilities
(softmax) and charges -log p(true class). The data section standardises each pixel with statistics of
the training split only, and holds back 10% for validation and 10% for the test.

    build train specs/softmax_regression.yaml
    build train specs/softmax_regression.yaml --set train.optimizer.type=adam --set train.optimizer.lr=0.01
"""
from __future__ import annotations

import torch

import builder
from builder.data import load_data
from walkthrough import arguments, show, train


def main(cli=False, epochs=None, runs="runs/examples"):
    module, history, test = train("specs/softmax_regression.yaml", f"{runs}/softmax_regression", cli, epochs=epochs)
    show("test accuracy", round(test["accuracy"], 4))

    # which digits does a linear model confuse? count the test mistakes per true digit
    data = load_data(builder.load("specs/softmax_regression.yaml").train["data"])
    x, y = data.test.fields
    with torch.no_grad():
        logits, probs = module(x.reshape(len(x), -1))  # the spec's two outputs; the loss reads the first
    predicted = probs.argmax(1)
    mistakes = torch.bincount(y[predicted != y], minlength=10)
    show("test mistakes per true digit 0..9", mistakes.tolist())
    return {"test": test, "mistakes": mistakes.tolist()}


if __name__ == "__main__":
    a = arguments()
    main(a.cli, a.epochs, a.runs)
