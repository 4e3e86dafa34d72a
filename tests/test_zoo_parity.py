"""Numerical parity of the small zoo specs with hand-written torch modules that follow the notes' code.

Each reference's weights are loaded into the spec's module through `builder.load_weights` with a small
weight map (reference names -> spec paths); eval mode, float32, max |difference| <= 1e-5 at two input
shapes each.
"""
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import builder

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
TOL = 1e-5


def spec_path(name):
    return SPECS / f"{name}.yaml"


def rules(pairs):
    """A weight map from (reference prefix, spec prefix) pairs: `prefix.{p}` -> `spec_prefix.{p}`."""
    return {"rules": [{"from": f"{a}.{{p}}", "to": f"{b}.{{p}}"} for a, b in pairs]}


def randomize(module, seed=0):
    """Every parameter and float buffer drawn at random (so a wrong mapping cannot hide behind zeros/ones)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
            t.copy_(torch.rand(t.shape, generator=g) * 0.6 - 0.3)
    return module


def max_diff(a, b):
    return (a - b).abs().max().item()


def check(ref, ours, inputs):
    ref.eval()
    ours.eval()
    with torch.no_grad():
        want, got = ref(*inputs), ours(*inputs)
    want = want if isinstance(want, tuple) else (want,)
    got = got if isinstance(got, tuple) else (got,)
    assert len(want) == len(got)
    for w, g in zip(want, got):
        assert w.shape == g.shape
        assert max_diff(w, g) <= TOL


# ---- the notes' linear models and MLPs -----------------------------------------------------------

class LinearModule2(nn.Module):
    """The notes' single-layer net: nn.Linear(input_nums, output_nums)."""

    def __init__(self, input_nums=2, output_nums=1):
        super().__init__()
        self.net = nn.Linear(input_nums, output_nums)

    def forward(self, x):
        return self.net(x)


class SoftmaxRegression(nn.Module):
    def __init__(self, inputs=64, outputs=10):
        super().__init__()
        self.net = nn.Linear(inputs, outputs)

    def forward(self, x):
        o = self.net(x)
        return o, nn.functional.softmax(o, dim=-1)


def notes_mlp():
    """The notes' Fashion-MNIST MLP, verbatim (with the Flatten typo fixed)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


def notes_lenet5():
    """LeNet-5 as the issue states it: conv 6@5x5 pad 2, sigmoid, avg-pool 2, conv 16@5x5, sigmoid,
    avg-pool 2, 400-120-84-10 with sigmoids."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10))


@pytest.mark.parametrize("batch", [1, 7])
def test_linear_regression(batch):
    ref = randomize(LinearModule2())
    ours = builder.load_weights(builder.build(spec_path("linear_regression")), ref.state_dict(),
                                rules([("net", "linear")]))
    check(ref, ours, [torch.randn(batch, 2)])


@pytest.mark.parametrize("batch", [1, 9])
def test_softmax_regression(batch):
    ref = randomize(SoftmaxRegression())
    ours = builder.load_weights(builder.build(spec_path("softmax_regression")), ref.state_dict(),
                                rules([("net", "linear")]))
    check(ref, ours, [torch.randn(batch, 64)])


@pytest.mark.parametrize("batch", [1, 5])
def test_mlp(batch):
    ref = randomize(notes_mlp())
    ours = builder.load_weights(builder.build(spec_path("mlp")), ref.state_dict(),
                                rules([("1", "hidden"), ("3", "out")]))
    check(ref, ours, [torch.randn(batch, 1, 28, 28)])


@pytest.mark.parametrize("batch", [1, 6])
def test_mlp_digits(batch):
    ref = randomize(nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10)))
    ours = builder.load_weights(builder.build(spec_path("mlp_digits")), ref.state_dict(),
                                rules([("0", "fc1"), ("3", "head")]))
    check(ref, ours, [torch.randn(batch, 64)])


@pytest.mark.parametrize("batch", [4, 11])
def test_xor_mlp(batch):
    ref = randomize(nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)))
    ours = builder.load_weights(builder.build(spec_path("xor_mlp")), ref.state_dict(),
                                rules([("0", "hidden"), ("2", "head")]))
    check(ref, ours, [torch.rand(batch, 2)])


@pytest.mark.parametrize("batch", [1, 4])
def test_lenet5(batch):
    ref = randomize(notes_lenet5())
    ours = builder.load_weights(builder.build(spec_path("lenet5")), ref.state_dict(),
                                rules([("0", "conv1"), ("3", "conv2"), ("7", "fc1"), ("9", "fc2"), ("11", "fc3")]))
    check(ref, ours, [torch.randn(batch, 1, 28, 28)])


@pytest.mark.parametrize("batch", [2, 5])
def test_autoencoder(batch):
    class AutoEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
            self.decoder = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 64), nn.Sigmoid())

        def forward(self, x):
            code = self.encoder(x)
            return self.decoder(code), code

    ref = randomize(AutoEncoder())
    ours = builder.load_weights(builder.build(spec_path("autoencoder")), ref.state_dict(), rules(
        [("encoder.0", "enc1"), ("encoder.2", "enc2"), ("decoder.0", "dec1"), ("decoder.2", "dec2")]))
    check(ref, ours, [torch.rand(batch, 64)])


@pytest.mark.parametrize("batch", [1, 10])
def test_gan_tril(batch):
    # the notes' Generator and Discriminator networks (their `net` attribute)
    generator = randomize(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 16)), seed=1)
    discriminator = randomize(nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1), nn.Sigmoid()), seed=2)
    nets = builder.build_all(spec_path("gan_tril"))
    assert set(nets) == {"generator", "discriminator"}
    builder.load_weights(nets["generator"], generator.state_dict(), rules([("0", "fc1"), ("2", "fc2")]))
    builder.load_weights(nets["discriminator"], discriminator.state_dict(), rules([("0", "fc1"), ("2", "fc2")]))
    z = torch.randn(batch, 8)
    check(generator, nets["generator"], [z])
    real = torch.tril(torch.empty(batch, 4, 4).uniform_(1, 5)).reshape(batch, 16)
    check(discriminator, nets["discriminator"], [real])
    with torch.no_grad():  # D(G(z)), the quantity both players' losses are made of
        assert max_diff(discriminator(generator(z)), nets["discriminator"](nets["generator"](z))) <= TOL


# ---- recurrent -----------------------------------------------------------------------------------

class NotesRNN(nn.Module):
    """The notes' autoregressive model: nn.RNN over the window, a linear output on the last state."""

    def __init__(self, inputs=1, hidden=16, outputs=1):
        super().__init__()
        self.rnn = nn.RNN(inputs, hidden, batch_first=True)
        self.out = nn.Linear(hidden, outputs)

    def forward(self, x):
        states, _ = self.rnn(x)
        return self.out(states[:, -1])


@pytest.mark.parametrize("batch,tau", [(3, 4), (5, 9)])
def test_rnn_sine(batch, tau):
    ref = randomize(NotesRNN())
    ours = builder.load_weights(builder.build(spec_path("rnn_sine"), tau=tau), ref.state_dict(),
                                {"rules": [{"from": "rnn.{p}", "to": "rnn.rnn.{p}"},
                                           {"from": "out.{p}", "to": "head.{p}"}]})
    t = torch.arange(tau * batch, dtype=torch.float32).reshape(batch, tau, 1)
    check(ref, ours, [torch.sin(0.01 * t) + 0.2 * torch.randn(batch, tau, 1)])


class CharLSTM(nn.Module):
    def __init__(self, vocab=128, embed=32, hidden=128):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens):
        out, _ = self.lstm(self.embed(tokens))
        return self.head(out)


@pytest.mark.parametrize("batch,T", [(2, 5), (3, 17)])
def test_char_lstm(batch, T):
    ref = randomize(CharLSTM())
    ours = builder.load_weights(builder.build(spec_path("char_lstm")), ref.state_dict(),
                                {"rules": [{"from": "lstm.{p}", "to": "lstm.rnn.{p}"}, {"from": "{k*}", "to": "{k}"}]})
    check(ref, ours, [torch.randint(0, 128, (batch, T))])


# ---- the Transformer encoder ----------------------------------------------------------------------

def notes_position_encoding(num_pos, d_model):
    """The notes' PositionEncoding table: P[i,2j] = sin(i/10000^(2j/d)), P[i,2j+1] = cos(i/10000^(2j/d))."""
    pos = torch.arange(num_pos).unsqueeze(1)
    divided = torch.pow(10000., torch.arange(0, d_model + 1, 2) / d_model)
    pe = torch.zeros(num_pos, d_model)
    pe[:, 0::2] = torch.sin(pos / divided[:pe[:, 0::2].size(1)])
    pe[:, 1::2] = torch.cos(pos / divided[:pe[:, 1::2].size(1)])
    return pe


class ReferenceEncoder(nn.Module):
    def __init__(self, d_model, heads, ffn, layers):
        super().__init__()
        self.register_buffer("pe", notes_position_encoding(64, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, ffn, dropout=0.1, batch_first=True, norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x):
        return self.encoder(x + self.pe[: x.shape[1]])


TRANSFORMER_MAP = {"rules": [
    {"from": "encoder.layers.{n}.self_attn.{p*}", "to": "layers.{n}.self_attn.attn.{p}"},
    {"from": "encoder.layers.{n}.{name}.{p}", "to": "layers.{n}.{name}.{p}"},
], "ignore": ["pe"]}


@pytest.mark.parametrize("batch,T", [(2, 5), (3, 19)])
def test_transformer_encoder(batch, T):
    sizes = {"d_model": 32, "heads": 4, "ffn": 64, "layers": 2}
    torch.manual_seed(0)
    ref = ReferenceEncoder(**sizes)
    ours = builder.load_weights(builder.build(spec_path("transformer_encoder"), **sizes), ref.state_dict(),
                                TRANSFORMER_MAP)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.encoder.parameters())
    check(ref, ours, [torch.randn(batch, T, 32)])


def test_sinusoidal_table_is_the_notes_formula():
    from builder.ops.modules import sinusoidal_table
    d = 16
    table = sinusoidal_table(50, d)
    i, j = 7, 3
    assert abs(table[i, 2 * j].item() - math.sin(i / 10000 ** (2 * j / d))) < 1e-6
    assert abs(table[i, 2 * j + 1].item() - math.cos(i / 10000 ** (2 * j / d))) < 1e-6
    assert max_diff(table, notes_position_encoding(50, d)) < 1e-5


# ---- nn.Transformer (encoder-decoder) ---------------------------------------------------------------

TRANSFORMER_SMALL = {"d_model": 32, "nhead": 4, "dim_feedforward": 64, "num_encoder_layers": 2,
                     "num_decoder_layers": 3}


@pytest.mark.parametrize("batch,S,T", [(2, 5, 3), (3, 11, 7)])
def test_transformer_matches_nn_transformer_with_a_causal_target(batch, S, T):
    """torch's own nn.Transformer (post-norm, batch first), its decoder given the square subsequent mask,
    loaded through specs/transformer.torch-map.yaml."""
    torch.manual_seed(0)
    ref = randomize(nn.Transformer(batch_first=True, **TRANSFORMER_SMALL))
    ours = builder.load_weights(builder.build(spec_path("transformer"), **TRANSFORMER_SMALL), ref.state_dict(),
                                SPECS / "transformer.torch-map.yaml")
    src, tgt = torch.randn(batch, S, 32), torch.randn(batch, T, 32)
    mask = nn.Transformer.generate_square_subsequent_mask(T)
    ref.eval(), ours.eval()
    with torch.no_grad():
        want = ref(src, tgt, tgt_mask=mask, tgt_is_causal=True)
        assert max_diff(want, ours(src, tgt)) <= TOL
        # the causal mask matters: without it the reference differs
        assert max_diff(ref(src, tgt), want) > 10 * TOL


def test_transformer_default_count_equals_nn_transformer():
    with torch.device("meta"):
        ref = nn.Transformer()
        ours = builder.build(spec_path("transformer"), device="meta")
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters()) == 44_140_544


# ---- VAE: randn_like and exp ------------------------------------------------------------------------

class VAE(nn.Module):
    """Kingma & Welling's VAE on 64 pixels: z = mu + exp(logvar / 2) * eps, eps = torch.randn_like."""

    def __init__(self, features=64, hidden=32, code=8):
        super().__init__()
        self.enc = nn.Linear(features, hidden)
        self.mu = nn.Linear(hidden, code)
        self.logvar = nn.Linear(hidden, code)
        self.dec = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, features), nn.Sigmoid())

    def forward(self, x):
        h = torch.relu(self.enc(x))
        mu, logvar = self.mu(h), self.logvar(h)
        std = torch.exp(0.5 * logvar)
        return self.dec(mu + torch.randn_like(std) * std), mu, logvar


@pytest.mark.parametrize("batch", [1, 6])
def test_vae_matches_by_seed(batch):
    ref = randomize(VAE())
    ours = builder.load_weights(builder.build(spec_path("vae")), ref.state_dict(), {"rules": [
        {"from": "dec.0.{p}", "to": "dec.{p}"}, {"from": "dec.2.{p}", "to": "dec_out.{p}"},
        {"from": "{k*}", "to": "{k}"}]})
    ref.eval(), ours.eval()
    x = torch.rand(batch, 64)
    with torch.no_grad():
        torch.manual_seed(3)
        want = ref(x)
        torch.manual_seed(3)
        got = ours(x)
        for w, g in zip(want, got):
            assert max_diff(w, g) <= TOL
        # eps is drawn in eval too: another seed, another reconstruction, the same mu and logvar
        other = ours(x)
    assert max_diff(other[0], got[0]) > 1e-4 and torch.equal(other[1], got[1])


# ---- Siamese: one tower of weights shared by a block instance ------------------------------------------

class SiameseNet(nn.Module):
    def __init__(self, channels=1, width=32, embedding=128, size=28):
        super().__init__()
        self.tower = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * (size // 4) ** 2, embedding))

    def forward(self, a, b):
        ea, eb = self.tower(a), self.tower(b)
        return nn.functional.pairwise_distance(ea, eb), ea, eb


@pytest.mark.parametrize("batch", [1, 5])
def test_siamese_is_one_tower_applied_twice(batch):
    ref = randomize(SiameseNet())
    names = {0: "conv1", 3: "conv2", 7: "fc"}
    module = builder.build(spec_path("siamese"))
    assert sum(p.numel() for p in module.parameters()) == sum(p.numel() for p in ref.parameters()) == 420_352
    assert not any(k.startswith("right.") for k in module.state_dict())
    ours = builder.load_weights(module, ref.state_dict(), {"rules": [
        {"from": f"tower.{i}.{{p}}", "to": f"left.{n}.{{p}}"} for i, n in names.items()]})
    a, b = torch.randn(batch, 1, 28, 28), torch.randn(batch, 1, 28, 28)
    check(ref, ours, [a, b])
    with torch.no_grad():   # the same image on both sides: distance ~0 (pairwise_distance's eps)
        assert ours(a, a)[0].max().item() < 1e-4
