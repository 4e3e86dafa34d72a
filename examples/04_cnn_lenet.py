"""Chapter 4, convolutional networks: LeNet-5 reads the digits, scaled up to 28x28.

The data section resizes every 8x8 digit to 28x28 (bilinear) and normalises it with the training
split's mean and standard deviation: transform: {resize: [28, 28], normalize: true}. The network slides
5x5 windows (two convolution stages with sigmoid and average pooling) and ends in three dense layers.

    build train specs/lenet5.yaml
    build train specs/lenet5.yaml --set train.optimizer.lr=0.001 --epochs 40
"""
from __future__ import annotations

from walkthrough import arguments, show, train


def main(cli=False, epochs=None, runs="runs/examples"):
    module, history, test = train("specs/lenet5.yaml", f"{runs}/lenet5", cli, epochs=epochs)
    show("test accuracy", round(test["accuracy"], 4))
    conv1 = module.get_submodule("conv1").weight
    show("conv1 kernels (out, in, h, w)", tuple(conv1.shape))
    return {"test": test, "epochs": len(history)}


if __name__ == "__main__":
    a = arguments()
    main(a.cli, a.epochs, a.runs)
