"""Chapter 3, multilayer perceptrons: a hidden layer with a non-linearity learns what a line cannot.

First XOR (specs/xor_mlp.yaml): no single perceptron separates (0,1), (1,0) from (0,0), (1,1); eight
tanh units do. Then the digits with one hidden ReLU layer and dropout (specs/mlp_digits.yaml), trained
by SGD with Nesterov momentum and weight decay (none on the biases: a parameter group chosen by the
pattern "*.bias"), a cosine schedule after a linear warm-up, and early stopping on validation accuracy.

    build train specs/xor_mlp.yaml
    build train specs/mlp_digits.yaml
    build train specs/mlp_digits.yaml --set hidden=256 --set train.optimizer.momentum=0.0
"""
from __future__ import annotations

import torch

from walkthrough import arguments, show, train


def main(cli=False, epochs=None, runs="runs/examples"):
    xor, _, _ = train("specs/xor_mlp.yaml", f"{runs}/xor_mlp", cli, epochs=epochs)
    corners = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    with torch.no_grad():
        answers = xor(corners).argmax(1).tolist()
    show("xor of (0,0) (0,1) (1,0) (1,1)", answers)

    mlp, history, test = train("specs/mlp_digits.yaml", f"{runs}/mlp_digits", cli, epochs=epochs)
    show("digits test accuracy", round(test["accuracy"], 4))
    show("learning rate per epoch (warm-up, then cosine)", [round(r["lr"], 4) for r in history])
    return {"xor": answers, "test": test}


if __name__ == "__main__":
    a = arguments()
    main(a.cli, a.epochs, a.runs)
