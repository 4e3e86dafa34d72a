"""Optimizers with parameter groups by spec path, learning-rate schedules, and initialisers."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import builder
from builder.core.errors import UserError
from builder.ops.initializers import apply_init
from builder.training.optim import Schedule, make_optimizer

SPEC = """
spec: 1
name: small
inputs: {x: {shape: [B, 4]}}
nodes:
  stem: {op: Linear, out_features: 8}
  norm: {op: LayerNorm}
  act: {op: ReLU}
  head: {op: Linear, out_features: 2}
"""


@pytest.fixture
def model():
    return builder.build(builder.load(SPEC))


def test_groups_by_spec_path_no_decay_on_biases_and_norms(model):
    opt = make_optimizer(model, {"type": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 0.1,
                                 "weight_decay": 1e-4, "groups": [
                                     {"params": ["*.bias", "norm"], "weight_decay": 0.0},
                                     {"params": "head.*", "lr": 0.01}]})
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [sorted(names[id(p)] for p in g["params"]) for g in opt.param_groups]
    assert groups == [["stem.weight"], ["head.bias", "norm.bias", "norm.weight", "stem.bias"], ["head.weight"]]
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0, 1e-4]
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.1, 0.01]
    assert opt.param_groups[0]["dampening"] == 0.1


@pytest.mark.parametrize("cfg", [
    {"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
    {"type": "adam", "lr": 1e-3, "betas": [0.9, 0.98], "eps": 1e-9},
    {"type": "adamw", "lr": 1e-3, "weight_decay": 0.01},
    {"type": "adagrad", "lr": 0.1, "initial_accumulator_value": 0.1},
    {"type": "rmsprop", "lr": 0.01, "alpha": 0.9, "centered": True},
])
def test_every_optimizer_takes_its_knobs_and_steps(model, cfg):
    opt = make_optimizer(model, cfg)
    assert type(opt).__name__.lower() == cfg["type"]
    before = model.head.weight.detach().clone()
    model(torch.randn(5, 4)).square().mean().backward()
    opt.step()
    assert not torch.equal(before, model.head.weight)


def test_optimizer_mistakes_are_one_line_errors(model):
    with pytest.raises(UserError, match="unknown type 'adamm'.*did you mean 'adam'"):
        make_optimizer(model, {"type": "adamm", "lr": 0.1})
    with pytest.raises(UserError, match="has no option 'momentun'.*did you mean 'momentum'"):
        make_optimizer(model, {"type": "sgd", "lr": 0.1, "momentun": 0.9})
    with pytest.raises(UserError, match="(?i)nesterov"):
        make_optimizer(model, {"type": "sgd", "lr": 0.1, "nesterov": True})  # needs momentum


def lrs(cfg, steps, steps_per_epoch=10, epochs=10, base=1.0):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base)
    sched = Schedule(opt, cfg, steps_per_epoch, epochs)
    out = []
    for s in range(steps):
        out.append(sched.lr())
        sched.step()
        if (s + 1) % steps_per_epoch == 0:
            sched.epoch_end({})
    return out


def test_noam_schedule_is_the_transformer_papers_formula():
    d_model, warmup = 512, 40
    got = lrs({"type": "noam", "d_model": d_model, "warmup_steps": warmup}, 200)
    for s in (1, 10, 40, 41, 200):
        want = d_model ** -0.5 * min(s ** -0.5, s * warmup ** -1.5)
        assert got[s - 1] == pytest.approx(want)
    assert max(got) == pytest.approx(got[warmup - 1])  # the peak is at the end of warm-up


def test_step_multistep_exponential_are_per_epoch():
    assert lrs({"type": "step", "step_size": 2, "gamma": 0.5}, 60)[::10] == pytest.approx([1, 1, .5, .5, .25, .25])
    assert lrs({"type": "multistep", "milestones": [1, 3], "gamma": 0.1}, 50)[::10] == \
        pytest.approx([1, .1, .1, .01, .01])
    assert lrs({"type": "exponential", "gamma": 0.9}, 30)[::10] == pytest.approx([1, .9, .81])


def test_cosine_with_linear_warmup():
    got = lrs({"type": "cosine", "warmup_steps": 10}, 100, base=0.1)
    assert got[:10] == pytest.approx([0.1 * (s + 1) / 10 for s in range(10)])
    assert got[10] == pytest.approx(0.1)
    assert got[55] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert got[-1] < 1e-3


def test_reduce_on_plateau_cuts_after_patience():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = Schedule(opt, {"type": "reduce_on_plateau", "patience": 1, "factor": 0.5}, 1, 10)
    seen = []
    for loss in [1.0, 0.5, 0.6, 0.6, 0.6, 0.6, 0.4]:
        sched.epoch_end({"val.loss": loss})
        seen.append(sched.lr())
    assert seen == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    state = sched.state_dict()
    again = Schedule(opt, {"type": "reduce_on_plateau", "patience": 1, "factor": 0.5}, 1, 10)
    again.load_state_dict(state)
    assert again.lr() == 0.25


def test_schedule_mistakes_are_one_line_errors():
    with pytest.raises(UserError, match="did you mean 'cosine'"):
        lrs({"type": "cosin"}, 1)
    with pytest.raises(UserError, match="noam needs d_model"):
        lrs({"type": "noam", "warmup_steps": 4}, 1)
    with pytest.raises(UserError, match="no option"):
        lrs({"type": "step", "step": 3}, 1)


def test_init_rules_whole_network_and_per_path(model):
    torch.manual_seed(0)
    apply_init(model, ["xavier_uniform", {"params": "head.*", "type": "zeros"},
                       {"params": "stem.bias", "type": "constant", "value": 0.5}])
    bound = math.sqrt(6 / (4 + 8))
    assert model.stem.weight.abs().max() <= bound and model.stem.weight.std() > bound / 3
    assert torch.all(model.stem.bias == 0.5)
    assert torch.all(model.head.weight == 0) and torch.all(model.head.bias == 0)
    assert torch.all(model.norm.weight == 1) and torch.all(model.norm.bias == 0)  # norms keep 1 and 0
    apply_init(model, {"type": "normal", "std": 0.01})
    assert 0.005 < model.stem.weight.std() < 0.02
    apply_init(model, {"type": "kaiming", "nonlinearity": "relu"})
    assert model.head.weight.std() > 0.2
    with pytest.raises(UserError, match="did you mean 'xavier_normal'"):
        apply_init(model, "xavier_norma")
    with pytest.raises(UserError, match="no parameter matches"):
        apply_init(model, {"params": "nope.*", "type": "zeros"})


def test_a_nodes_own_init_wins_over_train_init():
    spec = builder.load(SPEC.replace("head: {op: Linear, out_features: 2}",
                                     "head: {op: Linear, out_features: 2, init: zeros}"))
    model = builder.build(spec)
    assert torch.all(model.head.weight == 0)
    apply_init(model, "xavier_uniform", skip=model.build_info.node_inits)
    assert torch.all(model.head.weight == 0) and model.stem.weight.abs().sum() > 0
