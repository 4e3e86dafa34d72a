"""The generation page's first commands (docs/generation.md), run as written (one epoch instead of 30):
train a character model, generate in torch, export the decoder, generate in onnxruntime; the vocabulary
travels with the run."""
import json
import re
import shlex
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from builder.commands import cli

ROOT = Path(__file__).resolve().parents[1]


def page_commands():
    text = (ROOT / "docs" / "generation.md").read_text(encoding="utf-8")
    block = text.split("```console", 1)[1].split("```", 1)[0]
    return [shlex.split(line[2:], comments=True)[1:] for line in block.splitlines() if line.startswith("$ build ")]


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The page's training line with one epoch, in a scratch folder: (folder, commands, its output)."""
    folder = tmp_path_factory.mktemp("write")
    commands = [[str(ROOT / a) if a.startswith("specs/") else a for a in argv] for argv in page_commands()]
    train = commands[0]
    train[train.index("--epochs") + 1] = "1"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        from io import StringIO
        out, err = StringIO(), StringIO()
        mp.setattr("sys.stdout", out)
        mp.setattr("sys.stderr", err)
        code = cli.main(train)
    return folder, commands, (code, out.getvalue(), err.getvalue())


def test_the_generation_page_commands_run(trained, capsys, monkeypatch):
    folder, (_, generate, export, generate_onnx), (code, out, err) = trained
    monkeypatch.chdir(folder)
    assert code == 0, err
    unigram = r"\(unigram perplexity of the training split 19\.59\)"
    assert re.search(r"test: loss [\d.]+  perplexity [\d.]+  " + unigram, out + err)
    vocab = json.loads((folder / "runs/char_lstm/vocab.json").read_text(encoding="utf-8"))
    assert vocab == sorted(vocab) and len(vocab) == 57
    assert torch.load(folder / "runs/char_lstm/best.pt", weights_only=True)["vocab"] == vocab

    texts = []
    for argv in (generate, generate, export, generate_onnx):
        code, out, err = run(argv, capsys)
        assert code == 0, err
        texts.append(out)
    assert texts[0] == texts[1] == texts[3]
    assert texts[0].startswith("The ") and len(texts[0]) == len("The ") + 200 + 1
    assert set(texts[0][:-1]) <= set(vocab)
    decode = onnx.load(folder / "char_lstm_decoder/decode.onnx", load_external_data=False)
    assert json.loads({p.key: p.value for p in decode.metadata_props}["builder.vocab"]) == vocab


def test_prompts_outside_the_vocabulary_and_predict_with_token_names(trained, capsys, monkeypatch):
    folder, (_, generate, _, _), (code, _, err) = trained
    monkeypatch.chdir(folder)
    assert code == 0, err
    argv = list(generate)
    argv[argv.index("--prompt") + 1] = "Thé €"
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert err == "the prompt has characters outside the model's vocabulary of 57: 'é', '€'\n"
    code, out, err = run(generate[:generate.index("--prompt")] + ["--prompt-ids", "3,57", "--max-new", "2"], capsys)
    assert code == 2 and "57 outside the vocabulary (ids 0..56)" in err
    code, out, err = run(generate[:generate.index("--prompt")] + ["--prompt-ids", "3,4", "--max-new", "2", "--ids"],
                         capsys)
    assert code == 0 and re.fullmatch(r"3,4,\d+,\d+\n", out)

    vocab = json.loads((folder / "runs/char_lstm/vocab.json").read_text(encoding="utf-8"))
    np.save(folder / "prompt.npy", np.array([[vocab.index(c) for c in "The machin"]], dtype=np.int64))
    spec = generate[1]
    code, torch_out, err = run(["predict", spec, "--run", "runs/char_lstm", "--input", "prompt.npy", "--top-k", "2"],
                               capsys)
    assert code == 0, err
    assert re.fullmatch(r"next token after the last position:\n0: '.' \(0\.\d+\), '.' \(0\.\d+\)\n", torch_out)
    assert run(["export", spec, "--run", "runs/char_lstm", "-o", "lm.onnx"], capsys)[0] == 0
    code, onnx_out, err = run(["predict", "lm.onnx", "--input", "prompt.npy", "--top-k", "2"], capsys)
    assert code == 0 and onnx_out.split(" (")[0] == torch_out.split(" (")[0]


def test_a_bpe_tokenizer_is_trained_saved_and_used(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = str(ROOT / "specs/char_lstm.yaml")
    sizes = ["--set", "vocab=300", "--set", "hidden=16", "--set", "embed=8", "--set", "seq_len=16"]
    code, out, err = run(["train", spec, *sizes, "--set", "train.data.tokenizer={type: bpe, vocab_size: 300}",
                          "--epochs", "1"], capsys)
    assert code == 0, err
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(tmp_path / "runs/char_lstm/tokenizer.json"))
    assert tok.get_vocab_size() == 300
    assert "(unigram perplexity of the training split" in out + err
    code, out, err = run(["generate", spec, "--run", "runs/char_lstm", "--prompt", "The machine", "--max-new", "5",
                          "--ids"], capsys)
    assert code == 0, err
    ids = [int(i) for i in out.split(",")]
    assert ids[:-5] == tok.encode("The machine").ids and len(ids) > 5


def test_streamed_text_never_shows_half_a_character(capsys):
    """Byte-level BPE tokens may split a UTF-8 character: the printer holds such a token back until the
    character is complete, so the streamed text is exactly the decoded text."""
    from builder.commands.generate import _Printer
    from builder.data.tokenizer import train_bpe
    tok = train_bpe("naïve café über " * 50, {"type": "bpe", "vocab_size": 260})
    text = "über naïve café"
    ids = tok.encode(text)
    assert any("\ufffd" in tok.decode(ids[:i]) for i in range(1, len(ids)))  # some prefix ends mid-character
    printer = _Printer(tok, ids[:1], as_ids=False)
    for token in ids[1:]:
        printer.add(token)
    printer.emit(final=True)
    assert capsys.readouterr().out == text + "\n"


def test_a_tokenizer_over_per_split_files_is_refused(tmp_path):
    from builder.data import load_data
    from builder.core.errors import UserError
    (tmp_path / "a.txt").write_text("some text " * 20)
    cfg = {"source": "text", "seq_len": 8, "tokenizer": {"type": "bpe", "vocab_size": 300},
           "files": {"train": str(tmp_path / "a.txt"), "val": str(tmp_path / "a.txt")}}
    with pytest.raises(UserError, match="would train its own tokenizer"):
        load_data(cfg)
