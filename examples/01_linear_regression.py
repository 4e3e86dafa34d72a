"""Chapter 1, linear regression: the notes' toy data y = 3 x1 + 4 x2 + noise, fitted by minibatch SGD.

The spec (specs/linear_regression.yaml) is one Linear(2 -> 1) node without bias; its train section reads
like the notes' loop: data: {source: toy_linear}, loss: mse, optimizer: {type: sgd, lr: 0.001}.

    build train specs/linear_regression.yaml
    build train specs/linear_regression.yaml --set train.optimizer.lr=0.004   # a bolder step

SGD should land where the analytic solution w* = (X^T X)^-1 X^T y lands: near w = (3, 4).
"""
from __future__ import annotations

import torch

import builder
from builder.data import load_data
from walkthrough import arguments, show, train


def main(cli=False, epochs=None, runs="runs/examples"):
    module, history, test = train("specs/linear_regression.yaml", f"{runs}/linear_regression", cli, epochs=epochs)
    w = module.get_submodule("linear").weight.detach().reshape(-1)
    show("learned w", w)

    # the notes' analytic solution on the same training split
    x, y = load_data(builder.load("specs/linear_regression.yaml").train["data"]).train.fields
    w_star = torch.linalg.solve(x.T @ x, x.T @ y).reshape(-1)
    show("analytic w* = (X^T X)^-1 X^T y", w_star)
    show("test mse (the noise variance is 9)", round(test["mse"], 3))
    return {"w": w.tolist(), "w_star": w_star.tolist(), "test": test}


if __name__ == "__main__":
    a = arguments()
    main(a.cli, a.epochs, a.runs)
