"""The training stage: a spec's `train:` section (a TrainConfig) -> trained networks and a run folder.

    config.py      the typed, frozen TrainConfig, parsed once in the spec stage (no torch)
    checks.py      `build check`'s look at loss, optimizer, schedule, metric, init and data-source options
    entry.py       train(spec) and fit(networks, config): the run folder, seeds, data, the loop, the end
    supervised.py  the supervised loop (zero_grad, forward, loss, backward, step, validate)
    gan.py         the GAN loop and its losses
    book.py        history, early stopping, checkpoints, signals
    setup.py       device, mixed precision, DDP/compile wrapping, inputs laid out as the network wants
    step.py        what the backward picture takes from training: the first batch and the loss

This file imports nothing, so `builder.spec.train_section` loads without torch.
"""
