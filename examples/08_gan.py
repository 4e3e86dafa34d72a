"""Chapter 8, generative adversarial networks: learn the notes' 4x4 lower-triangular matrices with
U(1, 5) entries from noise z ~ N(0, 1).

specs/gan_tril.yaml has two networks, generator and discriminator; train.mode gan alternates k
discriminator steps (real -> 1, generated -> 0) with one generator step. Losses: minimax (the original
min log(1 - D(G(z)))), non_saturating, wgan (critic without sigmoid, weights clipped to [-c, c]) and
wgan_gp (gradient penalty at points between real and generated samples). The metric is the distance
between the mean generated matrix and the mean real one.

    build train specs/gan_tril.yaml --set g_hidden=64 --set d_hidden=64 --set train.gan.k=5
"""
from __future__ import annotations

import torch

from walkthrough import arguments, show, train

ADAM = {"type": "adam", "lr": 1e-3, "betas": [0.5, 0.999]}


def main(cli=False, epochs=None, runs="runs/examples"):
    nets, history, test = train("specs/gan_tril.yaml", f"{runs}/gan_tril", cli,
                                params={"g_hidden": 64, "d_hidden": 64}, epochs=epochs,
                                gan={"loss": "minimax", "k": 5}, optimizer=ADAM)
    generator = nets["generator"]
    with torch.no_grad():
        samples = generator(torch.randn(1000, 8)).reshape(-1, 4, 4)
    torch.set_printoptions(precision=2, sci_mode=False)
    show("mean generated matrix (real: 3 on and below the diagonal, 0 above)", "\n" + str(samples.mean(0)))
    show("distance of the means, per epoch", [round(r["val.mean_distance"], 2) for r in history])
    return {"test": test, "history": history}


if __name__ == "__main__":
    a = arguments()
    main(a.cli, a.epochs, a.runs)
