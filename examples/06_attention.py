"""Chapter 6, attention and the Transformer: a small causal Transformer language model over characters.

examples/char_transformer.yaml stacks two pre-norm blocks of causal multi-head self-attention and a
feed-forward network over embedded characters plus sinusoidal positions. It trains with the schedule of
"Attention is all you need": lr = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5) (optimizer lr 1.0
as the scale), which climbs for warmup_steps and then decays as 1/sqrt(step).

    build train examples/char_transformer.yaml
    build train examples/char_transformer.yaml --set layers=4 --set train.schedule.warmup_steps=200
"""
from __future__ import annotations

from walkthrough import arguments, show, train


def main(cli=False, epochs=None, runs="runs/examples"):
    module, history, test = train("examples/char_transformer.yaml", f"{runs}/char_transformer", cli, epochs=epochs)
    show("test perplexity", round(test["perplexity"], 2))
    show("learning rate at the end of each epoch", [round(r["lr"], 5) for r in history])
    return {"test": test, "lr": [r["lr"] for r in history]}


if __name__ == "__main__":
    a = arguments()
    main(a.cli, a.epochs, a.runs)
