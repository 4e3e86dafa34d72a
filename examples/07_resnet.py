"""Chapter 7, residual networks: ResNet-18's shape (stem, four stages of basic blocks with shortcuts,
global pooling), narrowed to 8 channels, on the digits at 32x32.

Each block adds its input back to the output of two 3x3 convolutions, so a block only has to learn the
residual; a 1x1 convolution projects the shortcut where the shape changes. Kaiming initialisation, SGD
with momentum and a cosine schedule, as the spec's train section says.

    build train specs/resnet18.yaml --set channels=1 --set size=32 --set width=8 --set classes=10
"""
from __future__ import annotations

from walkthrough import arguments, show, train

PARAMS = {"channels": 1, "size": 32, "width": 8, "classes": 10}


def main(cli=False, epochs=None, runs="runs/examples", **overrides):
    module, history, test = train("specs/resnet18.yaml", f"{runs}/resnet18", cli, params=PARAMS, epochs=epochs,
                                  **overrides)
    show("test accuracy / top-5", (round(test["accuracy"], 4), round(test["top5"], 4)))
    show("parameters", sum(p.numel() for p in module.parameters()))
    return {"test": test}


if __name__ == "__main__":
    a = arguments()
    main(a.cli, a.epochs, a.runs)
