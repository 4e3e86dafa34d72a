"""Chapter 5, recurrent networks: one-step prediction of a noisy sine, then a character language model.

specs/rnn_sine.yaml reads windows of tau values of x_t = sin(0.01 t) + noise and predicts the next one.
specs/char_lstm.yaml reads 64 characters of the built-in corpus and predicts each next character; its
quality is the perplexity exp(mean -log p(next char)), to be compared with the unigram perplexity (a
model that knows only how common each character is). Gradients are clipped to norm 1.

    build train specs/rnn_sine.yaml
    build train specs/char_lstm.yaml --epochs 30
"""
from __future__ import annotations

import torch

import builder
from builder.data import load_data
from walkthrough import arguments, show, train


def sample(model, vocab, prompt, length=80, temperature=0.8, seed=0):
    """Generate text with builder.generate: the LSTM carries its state from one character to the next."""
    ids = builder.generate(model, torch.tensor([[vocab.index(c) for c in prompt]]), length,
                           temperature=temperature, seed=seed)
    return "".join(vocab[i] for i in ids[0].tolist())


def main(cli=False, epochs=None, runs="runs/examples"):
    _, _, sine = train("specs/rnn_sine.yaml", f"{runs}/rnn_sine", cli, epochs=epochs)
    show("sine: test mse (noise variance 0.04)", round(sine["mse"], 4))

    lstm, history, test = train("specs/char_lstm.yaml", f"{runs}/char_lstm", cli, epochs=epochs)
    info = load_data(builder.load("specs/char_lstm.yaml").train["data"]).info
    show("char_lstm: test perplexity", round(test["perplexity"], 2))
    show("unigram perplexity of the corpus", round(info["unigram_perplexity"], 2))
    text = sample(lstm, info["vocab"], "The machine ")
    show("sample", repr(text))
    return {"sine": sine, "test": test, "unigram": info["unigram_perplexity"], "sample": text}


if __name__ == "__main__":
    a = arguments()
    main(a.cli, a.epochs, a.runs)
