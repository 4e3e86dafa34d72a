"""The training step's parts for one step outside the loop (the backward picture, viz/step.py): the same
seed, initial weights, batch layout and loss the trainer uses, read from the same TrainConfig."""
from __future__ import annotations

from builder.data import load_data
from builder.ops.initializers import apply_init
from builder.training.loss_terms import describe_loss, objective
from builder.core.types import node_inits
from builder.spec.train_section import TrainConfig
from builder.training.setup import adapt_inputs


def prepare(module, cfg: TrainConfig) -> None:
    """Initial weights as the trainer sets them (the `init:` rules; a node's own `init:` wins)."""
    apply_init(module, cfg.init, skip=node_inits(module))


def training_batch(module, cfg: TrainConfig, batch_size: int):
    """(fields, number of inputs, has target) for the first `batch_size` rows of the training split,
    laid out as the trainer feeds `module`."""
    data = load_data(dict(cfg.data.options))
    adapt_inputs(module, data)
    return data.train.sample(batch_size), data.train.n_inputs, data.train.has_target


def loss_of(cfg: TrainConfig, module):
    """(loss(outputs, inputs, target), its name): the trainer's loss for `module` (its first output, or the
    terms of a `loss:` list over its named outputs and inputs)."""
    return objective(cfg.loss, module), describe_loss(cfg.loss)
