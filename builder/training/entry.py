"""Entry points: `train(spec)` (what `build train` and `builder.train` run) and `fit(networks, config)`."""
from __future__ import annotations

import contextlib
import copy
import signal
import sys
from pathlib import Path

import torch
import torch.nn as nn

from builder.data import tokenizer
from builder.data import load_data
from builder.training.distributed import join, leave
from builder.core.errors import UserError
from builder.text.readers import read_bounded, read_text_file
from builder.ops.initializers import apply_init
from builder.core.types import node_inits, spec_inputs
from builder.training.runlog import Console, RunFolder, read_resolved
from builder.training.book import Book, RunFinished, TrainingInterrupted, stop_on_signals
from builder.spec.train_section import TrainConfig, from_plain
from builder.training.gan import train_gan
from builder.training.setup import pick_device
from builder.training.supervised import train_supervised


def train(spec=None, *, resume=None, run_dir=None, device="auto", quiet=False, log_json=False,
          compile=False, tensorboard=False, callback=None, overwrite=False, **overrides):
    """Train a spec by its `train:` section; returns (module, history, run_dir).

    `spec` is a builder.Spec or a YAML path; `resume` a run folder to continue from its last.pt. A fresh
    run refuses a folder that already holds a run (one finished epoch or more) unless `overwrite`. Keyword
    overrides replace keys of the train section: `epochs=3`, or `**{"optimizer.lr": 0.01}`. `callback(row)`
    is called after every epoch with its metrics row; returning True stops the run there (like a kill
    after that epoch's checkpoint). For a GAN spec, `module` is a dict of the two networks.
    """
    from builder.compile import compile_all
    from builder.spec.reader import Spec, load

    if resume is not None:
        resolved = read_resolved(resume)
        spec = load(_spec_source(resume, resolved), overrides=resolved.get("params") or {})
        raw, run_dir = resolved["train"], Path(resume)
    else:
        if spec is None:
            raise UserError("train: give a spec, or resume=<run folder>")
        if not isinstance(spec, Spec):
            from builder.data.sizes import load_sized
            spec = load_sized(spec, {})
        raw = spec.training.raw if spec.training is not None else spec.train
    config = spec.training if spec.training is not None and not overrides and resume is None else \
        from_plain(apply_overrides(raw, overrides), spec.networks)
    torch.manual_seed(config.seed)  # the networks' default initial weights follow the seed
    networks = compile_all(spec)
    spec_text = read_text_file(spec.path, "spec") if spec.path else None
    resolved = {**spec.resolved, "spec_path": str(spec.path) if spec.path else None, "train": dict(config.raw)}
    return fit(networks, config, name=spec.name, run_dir=run_dir, resume=resume is not None, device=device,
               quiet=quiet, log_json=log_json, compile=compile, tensorboard=tensorboard, callback=callback,
               spec_text=spec_text, resolved=resolved, overwrite=overwrite, labels=spec.labels)


def _spec_source(run_dir, resolved):
    """The spec a run was started from: its original file while unchanged (its `use:` imports resolve
    there), else the copy in the run folder."""
    saved = Path(run_dir) / "spec.yaml"
    original = Path(resolved["spec_path"]) if resolved.get("spec_path") else None
    if original and original.is_file() and (not saved.exists() or
                                            read_bounded(original, "spec") == read_bounded(saved, "run file")):
        return original
    if saved.exists():
        return saved
    raise UserError(f"--resume {run_dir}: the run folder has no spec.yaml to rebuild the network from")


def fit(networks, cfg, *, name="model", run_dir=None, resume=False, device="auto", quiet=False,
        log_json=False, compile=False, tensorboard=False, callback=None, spec_text=None, resolved=None,
        overwrite=False, labels=None):
    """Train ready-built networks ({"model": m} or {"generator": g, "discriminator": d}) by `cfg`, a
    TrainConfig or a plain `train:` mapping. `labels` (the spec's) name the class ids."""
    if isinstance(networks, nn.Module):
        networks = {"model": networks}
    cfg = cfg if isinstance(cfg, TrainConfig) else from_plain(cfg, networks)
    check_networks(cfg, networks)
    device = pick_device(device)
    world = join(device)
    run = None
    try:
        data = load_data(cfg.data.options, input_names=_input_names(cfg, networks))  # first: a data mistake leaves no run folder behind
        name_classes(data.info, labels)
        # locked against a second training; a finished run is not silently overwritten
        run = RunFolder(run_dir or Path("runs") / name, enabled=world.is_main, resume=resume, overwrite=overwrite)
        run.write_spec(spec_text, resolved or {"name": name, "params": {}, "train": dict(cfg.raw)})
        console = Console(quiet, log_json, enabled=world.is_main)
        seed = cfg.seed
        torch.manual_seed(seed)
        vocabulary = tokenizer.from_state(data.info)  # a language model's vocabulary travels with the run
        if vocabulary is not None:
            run.write_text(*vocabulary.file())
        for net in networks.values():
            net.to(device)
            apply_init(net, cfg.init, skip=node_inits(net))
        if world.active:  # same initial weights everywhere (DDP copies rank 0's), own dropout and noise
            torch.manual_seed(seed + 1_000_003 * world.rank)
        loop = train_gan if cfg.mode == "gan" else train_supervised
        book = Book(cfg, run, console, world, seed, resume, callback, tensorboard)
        book.vocabulary = vocabulary.state() if vocabulary is not None else {}
        book.unigram_perplexity = data.info.get("unigram_perplexity")
        try:
            with stop_on_signals(book):
                result = loop(networks, data, cfg, book, device, world, compile)
        except RunFinished as e:  # --resume of a finished run: its kept weights, nothing trained
            console.result(str(e))
            result = networks if cfg.mode == "gan" else networks["model"]
        except KeyboardInterrupt:
            book.write_checkpoints(wait=True)  # an interrupt keeps the last finished epoch
            raise TrainingInterrupted(book.interrupted(), book.stop_signal or signal.SIGINT) from None
        except BaseException:
            with contextlib.suppress(Exception):  # keep the last finished epoch; report the first error
                book.write_checkpoints(wait=True)
            raise
        finally:
            run.close()
        for net in networks.values():
            net.eval()  # handed back for inference: dropout off, norms on their running statistics
        return result, book.history, run.path
    finally:
        if run is not None:
            run.release()
        leave(world, finished=sys.exc_info()[0] is None)


def _input_names(cfg, networks):
    """The network's input names, for a source that picks its arrays by name (a GAN's data has none)."""
    if cfg.mode == "gan":
        return None
    return [s.name for s in spec_inputs(next(iter(networks.values()))) or []] or None


def apply_overrides(cfg, overrides):
    """`epochs=3` or `**{"optimizer.lr": 0.01}`: set keys of the train section by dotted path."""
    cfg = copy.deepcopy(cfg)
    for dotted, value in overrides.items():
        keys = dotted.removeprefix("train.").split(".")
        node = cfg
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {} if node.get(k) is None else {"type": node[k]}
            node = node[k]
        node[keys[-1]] = value
    return cfg


def name_classes(info: dict, labels) -> None:
    """The class names: the data's (a CSV's text labels, an npz `classes` array), else the spec's
    `labels:`; both given, they must agree in names and order (class id i is the i-th name)."""
    if not labels:
        return
    labels = [str(v) for v in labels]
    classes = info.get("classes")
    if classes is not None and list(map(str, classes)) != labels:
        raise UserError(f"labels: {labels} disagree with the data's classes {list(classes)} (class id i is "
                        "the i-th of the data's classes; write labels in that order, or leave them out)")
    if info.get("num_classes") not in (None, len(labels)):
        raise UserError(f"labels: {len(labels)} names, the data has {info['num_classes']} classes")
    info["classes"] = labels


def check_networks(cfg: TrainConfig, networks) -> None:
    """The mode's networks: a GAN trains generator and discriminator, the other modes one network."""
    if cfg.mode == "gan" and not {"generator", "discriminator"} <= set(networks):
        raise UserError(f"train.mode gan needs networks generator and discriminator, spec has {sorted(networks)}")
    if cfg.mode != "gan" and len(networks) != 1:
        raise UserError(f"train.mode {cfg.mode} trains one network; spec has {sorted(networks)}")
