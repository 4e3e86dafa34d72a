"""The GAN loop (generator and discriminator) and its losses: minimax, non_saturating, wgan, wgan_gp."""
from __future__ import annotations

import time

import torch
import torch.nn as nn

from builder.training.optim import Schedule, make_optimizer
from builder.spec.train_section import per_network
from builder.training.setup import adapt_inputs, first_output, mean_over_ranks, static_shape, to_device, wrap


def train_gan(networks, data, cfg, book, device, world, compile_model):
    """The notes' GAN: k discriminator (critic) steps on real and generated batches, then one generator
    step. Losses: minimax (Goodfellow 2014), non_saturating, wgan (weight clipping), wgan_gp."""
    G, D = networks["generator"], networks["discriminator"]
    kind, k, clip_c, gp_lambda = cfg.gan.loss, cfg.gan.k, cfg.gan.clip, cfg.gan.gp_lambda
    adapt_inputs(D, data)
    to_device(data, device)
    batch_size, shuffle = cfg.data.batch_size, cfg.data.shuffle
    latent_shape = static_shape(G, 0)
    steps_per_epoch = max(len(data.train) // world.size // batch_size // k, 1)  # generator steps
    opt_cfgs = per_network(cfg.optimizer, ("generator", "discriminator"))
    sched_cfgs = per_network(cfg.schedule, ("generator", "discriminator"))
    opt_G, opt_D = make_optimizer(G, opt_cfgs["generator"]), make_optimizer(D, opt_cfgs["discriminator"])
    sched_G = Schedule(opt_G, sched_cfgs["generator"], steps_per_epoch, book.epochs)
    sched_D = Schedule(opt_D, sched_cfgs["discriminator"], steps_per_epoch * k, book.epochs)
    net_G, net_D = wrap(G, device, world, compile_model), wrap(D, device, world, compile_model)
    book.start({"networks": {"generator": G, "discriminator": D},
                "optimizers": {"generator": opt_G, "discriminator": opt_D},
                "schedules": {"generator": sched_G, "discriminator": sched_D}, "scaler": None})

    def noise(n):
        return torch.randn(n, *latent_shape, device=device)

    for epoch in range(book.first_epoch, book.epochs):
        t0 = time.perf_counter()
        G.train(), D.train()
        order = data.train.order(shuffle, book.seed, epoch, world.rank, world.size)
        batches = book.console.bar(data.train.batches(batch_size, order, drop_last=True),
                                   len(order) // batch_size, epoch + 1, book.epochs)
        sums = {"d_loss": 0.0, "g_loss": 0.0}
        counts = {"d_loss": 0, "g_loss": 0}
        for step, (real, *_) in enumerate(batches):
            # discriminator (critic) step on one real and one generated batch
            opt_D.zero_grad(set_to_none=True)
            fake = net_G(noise(len(real))).detach().reshape(real.shape)
            d_real, d_fake = first_output(net_D(real)), first_output(net_D(fake))
            d_loss = discriminator_loss(kind, d_real, d_fake)
            if kind == "wgan_gp":
                d_loss = d_loss + gp_lambda * gradient_penalty(net_D, real, fake)
            book.check_finite(d_loss.item(), epoch, step)
            d_loss.backward()
            opt_D.step()
            sched_D.step()
            if kind == "wgan":
                with torch.no_grad():
                    for p in D.parameters():
                        p.clamp_(-clip_c, clip_c)
            sums["d_loss"] += d_loss.item()
            counts["d_loss"] += 1
            if (step + 1) % k:
                continue
            # generator step: D is fixed (only G's optimizer steps)
            opt_G.zero_grad(set_to_none=True)
            d_gen = first_output(net_D(net_G(noise(len(real))).reshape(real.shape)))
            g_loss = generator_loss(kind, d_gen)
            book.check_finite(g_loss.item(), epoch, step)
            g_loss.backward()
            opt_G.step()
            sched_G.step()
            sums["g_loss"] += g_loss.item()
            counts["g_loss"] += 1
            book.stop_point()

        row = {"epoch": epoch + 1}
        row.update({f"train.{n}": mean_over_ranks(sums[n], counts[n], world) for n in sums})
        if data.val is not None:
            row["val.mean_distance"] = mean_distance(G, data.val, noise)
        row["lr"] = sched_G.lr()
        row["seconds"] = time.perf_counter() - t0
        sched_G.epoch_end(row), sched_D.epoch_end(row)
        if book.epoch_end(row):
            break
        book.stop_point()

    book.finish(lambda: {"mean_distance": mean_distance(G, data.test, noise)} if data.test is not None else None)
    return {"generator": G, "discriminator": D}


def discriminator_loss(kind, d_real, d_fake):
    """Minimax/non-saturating: BCE of D's probabilities (real -> 1, fake -> 0). WGAN: -(E D(x) - E D(G(z)))."""
    if kind in ("wgan", "wgan_gp"):
        return d_fake.mean() - d_real.mean()
    bce = nn.functional.binary_cross_entropy
    return bce(d_real.clamp(1e-7, 1 - 1e-7), torch.ones_like(d_real)) + \
        bce(d_fake.clamp(1e-7, 1 - 1e-7), torch.zeros_like(d_fake))


def generator_loss(kind, d_gen):
    """Minimax: minimise log(1 - D(G(z))) (the notes' `-BCE(D(G(z)), 0)`); non-saturating: -log D(G(z));
    WGAN: -E D(G(z))."""
    if kind in ("wgan", "wgan_gp"):
        return -d_gen.mean()
    p = d_gen.clamp(1e-7, 1 - 1e-7)
    if kind == "minimax":
        return torch.log1p(-p).mean()
    return -torch.log(p).mean()


def gradient_penalty(D, real, fake):
    """WGAN-GP: E (||grad_x D(x_hat)||_2 - 1)^2 at x_hat = eps x + (1 - eps) x_fake, eps ~ U(0, 1)."""
    eps = torch.rand(len(real), *([1] * (real.dim() - 1)), device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    score = first_output(D(x_hat))
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    return ((grad.reshape(len(real), -1).norm(2, dim=1) - 1) ** 2).mean()


@torch.no_grad()
def mean_distance(G, dataset, noise):
    """||mean of generated samples - mean of real samples||_2: how far the generator's mean is off."""
    real = torch.cat([b[0] for b in dataset.batches(4096, torch.arange(len(dataset)))])
    was_training = G.training
    G.eval()
    fake = G(noise(len(real))).reshape(real.shape)
    G.train(was_training)
    return (fake.float().mean(0) - real.float().mean(0)).norm().item()
