"""Where a built network's weights come from: a training run folder (`--run DIR`: its best.pt, else
last.pt), a weights file (`--weights FILE`), or its own initialisation (`--random`).

The file is read by checkpoint.load (weights_only=True) and put into the network by builder.load_weights,
the one loader; this module only finds the file and the state_dict inside it. Export, predict, bench and
the backward picture all go through `load_source`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from builder.training import checkpoint
from builder.core.errors import UserError
from builder.weights.loader import WeightsError, load_weights

CHECKPOINT_NAMES = ("best.pt", "last.pt")


def checkpoint_in(run_dir) -> Path:
    """The checkpoint a run folder hands on: best.pt (the best validated epoch), else last.pt."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"--run {run_dir}: no such folder")
    for name in CHECKPOINT_NAMES:
        if (run_dir / name).is_file():
            return run_dir / name
    raise UserError(f"--run {run_dir}: no best.pt or last.pt in it (train first, or pass --weights FILE)")


def state_dict_of(saved: dict, network: str | None = None) -> dict:
    """The state_dict inside a checkpoint: the trainer's {'networks': {name: state_dict}}, a {'model':
    state_dict}, or a bare state_dict."""
    for key in ("networks", "models"):
        if isinstance(saved.get(key), dict):
            models = saved[key]
            if network and network in models:
                return models[network]
            if len(models) == 1:
                return next(iter(models.values()))
            raise UserError(f"the checkpoint holds networks {', '.join(models)}, not '{network}': "
                            "name one with --network")
    if "model" in saved and isinstance(saved["model"], dict):
        sd = saved["model"]
        nested = network and isinstance(sd.get(network), dict)
        return sd[network] if nested else sd
    if network and isinstance(saved.get(network), dict):
        return saved[network]
    return saved


def load_source(module: torch.nn.Module, *, run=None, weights=None, random: bool = False,
                network: str | None = None) -> tuple[dict, Path | None]:
    """Fill `module` from `run` (a run folder) or `weights` (a file), or keep its init with `random`;
    with none of them given and `random` False, nothing is loaded either. Returns (the checkpoint dict,
    for class labels and input preparation; the file read), ({}, None) when nothing was loaded."""
    if run and weights or random and (run or weights):
        raise UserError("give only one of --run DIR, --weights FILE or --random")
    if not (run or weights):
        return {}, None
    path = checkpoint_in(run) if run else Path(weights)
    saved = checkpoint.load(path)
    if not isinstance(saved, dict):
        raise UserError(f"{path}: expected a checkpoint dict or a state_dict, got {type(saved).__name__}")
    tensors = {k: v for k, v in state_dict_of(saved, network).items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UserError(f"{path}: holds no tensors")
    try:
        load_weights(module, tensors)
    except WeightsError as e:
        raise UserError(f"{path}: weights do not fit the network ({_summary(e)})") from None
    return saved, path


def _summary(e: WeightsError) -> str:
    """WeightsError's lists, on one line (a CLI error is one line)."""
    parts = []
    for label, items in (("missing", e.missing), ("unexpected", e.unexpected), ("mis-shaped", e.mis_shaped),
                         ("other", e.other)):
        if items:
            more = f" (+{len(items) - 4} more)" if len(items) > 4 else ""
            parts.append(f"{label}: {', '.join(items[:4])}{more}")
    return "; ".join(parts)


def trained_network(spec, network: str | None = None, *, run=None, weights=None, random: bool = False):
    """(module, checkpoint) as deployed: the spec's network with the weights of `run`/`weights` (or its
    random init), and the training data's input standardisation put at its start and the target's
    de-standardisation at its end when the checkpoint carries them (builder.data.preparation), so it takes raw
    inputs and answers in the data's units. Shared by export, predict and bench."""
    from builder.compile import compile_network
    from builder.data.preparation import include

    module = compile_network(spec, network, None)
    saved, _ = load_source(module, run=run, weights=weights, random=random, network=network)
    include(module, saved.get("input_preparation") or {}, saved.get("output_preparation") or {})
    return module, saved
