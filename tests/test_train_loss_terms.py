"""Loss terms over named outputs and inputs (issue 13 item 7): the autoencoder and the VAE train on the
digits, the VAE's randn_like draws repeat exactly under a seed and across --resume, and the terms equal
the torch formulas they stand for."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import builder
from builder.training import checkpoint
from builder.commands.cli import main
from builder.core.errors import UserError
from builder.training.loss_terms import LossTerms, kl_normal


def train_losses(run_dir):
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    head = rows[0].split(",")
    return [float(r.split(",")[head.index("train.loss")]) for r in rows[1:]]


def test_vae_trains_on_digits_its_loss_falls_and_resume_repeats_the_draws(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    builder.train("specs/vae.yaml", run_dir=whole, quiet=True, epochs=3)
    losses = train_losses(whole)
    assert losses[-1] < 0.8 * losses[0], losses
    builder.train("specs/vae.yaml", run_dir=cut, quiet=True, epochs=3, callback=lambda row: row["epoch"] == 1)
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    a, b = checkpoint.load(whole / "last.pt"), checkpoint.load(cut / "last.pt")
    for key, value in a["networks"]["model"].items():
        assert torch.equal(value, b["networks"]["model"][key]), key
    assert train_losses(cut) == losses


def test_autoencoder_trains_against_its_own_input(tmp_path):
    module, history, _ = builder.train("specs/autoencoder.yaml", run_dir=tmp_path / "ae", quiet=True, epochs=3)
    losses = train_losses(tmp_path / "ae")
    assert losses[-1] < 0.7 * losses[0], losses
    x = torch.rand(4, 64)
    recon, code = module(x)
    assert recon.shape == (4, 64) and code.shape == (4, 8)


def test_terms_equal_the_torch_formulas():
    spec = builder.load("specs/vae.yaml")
    module = builder.build(spec)
    info = module.build_info
    terms = LossTerms(spec.train["loss"], list(info.outputs), [t.name for t in info.inputs])
    x = torch.rand(5, 64)
    torch.manual_seed(0)
    outputs = module(x)
    recon, mu, logvar = outputs
    want = F.binary_cross_entropy(recon, x) + (1 / 64) * torch.mean(
        -0.5 * torch.sum(1 + logvar - mu ** 2 - logvar.exp(), dim=1))
    torch.testing.assert_close(terms(outputs, [x], torch.zeros(5)), want)
    # KL of N(0, 1) against itself is 0; of N(1, 1) it is 1/2 per dim
    assert kl_normal(torch.zeros(3, 4), torch.zeros(3, 4)) == 0
    assert math.isclose(kl_normal(torch.ones(3, 4), torch.zeros(3, 4)).item(), 2.0)
    with pytest.raises(UserError, match=r"train.loss\[0\]: 'recon' is not an output of the network"):
        LossTerms([{"type": "mse", "output": "recon", "target": "x"}], ["reconstruction"], ["x"])
    with pytest.raises(UserError, match=r"target 'y' is not an input"):
        LossTerms([{"type": "mse", "output": "reconstruction", "target": "y"}], ["reconstruction"], ["x"])
    with pytest.raises(UserError, match=r"unknown loss 'kl_norml' \(did you mean 'kl_normal'"):
        LossTerms([{"type": "kl_norml", "mu": "mu", "logvar": "logvar"}], ["mu", "logvar"], ["x"])


def test_the_json_schema_knows_loss_terms():
    import json

    import jsonschema

    from builder.spec.schema import spec_schema
    from builder.text.yaml_loader import load_yaml
    doc = json.loads(json.dumps(load_yaml(open("specs/vae.yaml").read(), "specs/vae.yaml")))
    jsonschema.validate(doc, spec_schema())
    doc["train"]["loss"][1].pop("type")
    with pytest.raises(jsonschema.ValidationError, match="'type' is a required property"):
        jsonschema.validate(doc, spec_schema())
