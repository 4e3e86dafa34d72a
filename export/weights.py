"""Weights for export/predict/bench: a training run's checkpoint, a weights file, or the random init."""
from __future__ import annotations

from pathlib import Path

import torch
from builder.errors import UserError

CHECKPOINT_NAMES = ("best.pt", "last.pt")


def checkpoint_in(run_dir) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"--run {run_dir}: no such folder")
    for name in CHECKPOINT_NAMES:
        if (run_dir / name).is_file():
            return run_dir / name
    raise UserError(f"--run {run_dir}: no best.pt or last.pt in it (train first, or pass --weights FILE)")


def read_checkpoint(path) -> dict:
    """A checkpoint dict ({'model': state_dict, ...}) or a bare state_dict, loaded with weights_only."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such weights file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign files raise many types
        from builder.checkpoint import load_failure
        raise UserError(f"{path}: cannot load weights ({load_failure(e)})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a checkpoint dict or a state_dict, got {type(data).__name__}")
    return data


def state_dict_of(checkpoint: dict, network: str | None = None) -> dict:
    """The state_dict inside a checkpoint: the trainer's {'networks': {name: state_dict}}, a {'model':
    state_dict}, or a bare state_dict."""
    for key in ("networks", "models"):
        if isinstance(checkpoint.get(key), dict):
            models = checkpoint[key]
            if network and network in models:
                return models[network]
            if len(models) == 1:
                return next(iter(models.values()))
            raise UserError(f"the checkpoint holds networks {', '.join(models)}, not '{network}': "
                            "name one with --network")
    if "model" in checkpoint and isinstance(checkpoint["model"], dict):
        sd = checkpoint["model"]
        nested = network and isinstance(sd.get(network), dict)
        return sd[network] if nested else sd
    if network and isinstance(checkpoint.get(network), dict):
        return checkpoint[network]
    return checkpoint


def load_into(module: torch.nn.Module, state_dict: dict, source: str) -> None:
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UserError(f"{source}: holds no tensors")
    mine = module.state_dict()
    missing = [k for k in mine if k not in tensors]
    unexpected = [k for k in tensors if k not in mine]
    shaped = [f"{k} {list(tensors[k].shape)} vs {list(v.shape)}" for k, v in mine.items()
              if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)]
    if missing or unexpected or shaped:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)):
            if items:
                parts.append(f"{label}: {', '.join(items[:4])}" + (f" (+{len(items) - 4} more)" if len(items) > 4 else ""))
        raise UserError(f"{source}: weights do not fit the network ({'; '.join(parts)})")
    module.load_state_dict(tensors, strict=True)


def load_weights(module, *, run=None, weights=None, random: bool = False, network: str | None = None) -> dict:
    """Fill `module` from --run DIR or --weights FILE (or keep its init with --random); returns the
    checkpoint dict (for class labels), {} for --random."""
    given = [x for x in (run, weights) if x] + ([True] if random else [])
    if len(given) != 1:
        raise UserError("give exactly one of --run DIR, --weights FILE or --random")
    if random:
        return {}
    path = checkpoint_in(run) if run else Path(weights)
    checkpoint = read_checkpoint(path)
    load_into(module, state_dict_of(checkpoint, network), str(path))
    return checkpoint


def trained_network(spec, network: str | None = None, *, run=None, weights=None, random: bool = False):
    """(module, checkpoint) as deployed: the spec's network with the weights of --run/--weights (or its
    random init), and the training data's input standardisation put at its start when the checkpoint
    carries one (builder.preparation), so it takes raw inputs. Shared by export, predict and bench."""
    import builder
    from builder.preparation import include

    module = builder.build(spec, network=network)
    checkpoint = load_weights(module, run=run, weights=weights, random=random, network=network)
    include(module, checkpoint.get("input_preparation") or {})
    return module, checkpoint
