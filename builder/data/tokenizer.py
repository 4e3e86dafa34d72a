"""Text <-> token ids for language models: the character vocabulary of `source: text`, or a byte-level BPE
trained with Hugging Face `tokenizers` (`train.data.tokenizer: {type: bpe, vocab_size: N}`).

Both travel with what they made: `vocab.json` / `tokenizer.json` in the run folder, the same data in every
checkpoint (`vocab` or `tokenizer`), in the ONNX metadata and beside an exported decoder, so `build generate`
and `build predict` decode with exactly the ids the model was trained on.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from builder.core.errors import UserError

VOCAB_FILE = "vocab.json"
TOKENIZER_FILE = "tokenizer.json"
BPE_KEYS = ("type", "vocab_size", "min_frequency")


class CharTokenizer:
    """One id per character, ids in sorted character order (what `source: text` trains on)."""

    kind = "char"

    def __init__(self, vocab):
        self.vocab = list(vocab)
        self.index = {c: i for i, c in enumerate(self.vocab)}

    @property
    def size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        unknown = sorted({c for c in text if c not in self.index})
        if unknown:
            raise UserError(f"the prompt has characters outside the model's vocabulary of {self.size}: "
                            + ", ".join(repr(c) for c in unknown[:10]) + (" ..." if len(unknown) > 10 else ""))
        return [self.index[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(self.vocab[i] for i in ids)

    def state(self) -> dict:
        """What a checkpoint keeps."""
        return {"vocab": list(self.vocab)}

    def file(self) -> tuple[str, str]:
        return VOCAB_FILE, json.dumps(self.vocab, ensure_ascii=False)


class BpeTokenizer:
    """A Hugging Face `tokenizers.Tokenizer` (byte-level BPE: every text has an encoding)."""

    kind = "bpe"

    def __init__(self, tok):
        self.tok = tok

    @classmethod
    def from_json(cls, text: str, name: str = "tokenizer", checked: bool = False) -> "BpeTokenizer":
        from tokenizers import Tokenizer

        from builder.text.readers import MAX_TOKENIZER_BYTES, parse_json_text
        if not isinstance(text, str):
            raise UserError(f"{name}: expected a tokenizers JSON text, got {type(text).__name__}")
        if not checked:  # the limits (size, depth) before the Rust parser
            parse_json_text(text, name, MAX_TOKENIZER_BYTES)
        try:
            return cls(Tokenizer.from_str(text))
        except Exception as e:  # the Rust side raises Exception with a serde message
            raise UserError(f"{name}: not a tokenizers JSON file ({str(e).splitlines()[0][:200]})") from None

    @property
    def size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def decode(self, ids) -> str:
        return self.tok.decode(list(ids))

    def state(self) -> dict:
        return {"tokenizer": self.tok.to_str()}

    def file(self) -> tuple[str, str]:
        return TOKENIZER_FILE, self.tok.to_str()


def train_bpe(text: str, cfg) -> BpeTokenizer:
    """A byte-level BPE trained on `text` (nothing downloaded): `cfg` is `{type: bpe, vocab_size: N}`."""
    cfg = check_config(cfg)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg["vocab_size"], min_frequency=cfg.get("min_frequency", 2),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text], trainer=trainer)
    return BpeTokenizer(tok)


def check_config(cfg) -> dict:
    """`train.data.tokenizer`, or a one-line error."""
    if not isinstance(cfg, Mapping) or cfg.get("type") != "bpe":
        raise UserError(f"train.data.tokenizer must be {{type: bpe, vocab_size: N}}, got {cfg!r}")
    unknown = sorted(set(cfg) - set(BPE_KEYS))
    if unknown:
        raise UserError(f"train.data.tokenizer: unknown key(s) {unknown}; known: {', '.join(BPE_KEYS)}")
    size = cfg.get("vocab_size")
    if isinstance(size, bool) or not isinstance(size, int) or not 257 <= size <= 1_000_000:
        raise UserError(f"train.data.tokenizer.vocab_size must be a whole number from 257 (the 256 bytes + 1) "
                        f"to 1000000, got {size!r}")
    return cfg


def from_state(state: dict | None):
    """The tokenizer a checkpoint (or data info) carries, or None."""
    state = state or {}
    if state.get("tokenizer"):
        return BpeTokenizer.from_json(state["tokenizer"], "the checkpoint's tokenizer")
    if state.get("vocab"):
        return CharTokenizer(char_vocab(state["vocab"], "the checkpoint's vocab"))
    return None


def char_vocab(value, name: str) -> list:
    """A character vocabulary as read from a file: a list of distinct strings, else a one-line error."""
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise UserError(f"{name}: a character vocabulary must be a JSON list of strings")
    if len(set(value)) != len(value):
        raise UserError(f"{name}: the vocabulary lists a character twice")
    return value


def from_file(path):
    """`vocab.json` (a JSON list of characters) or a tokenizers `tokenizer.json`."""
    from builder.text.readers import MAX_TOKENIZER_BYTES, parse_json_text, read_text_file

    path = Path(path)
    text = read_text_file(path, "tokenizer", MAX_TOKENIZER_BYTES)  # bounded, like every file we read
    data = parse_json_text(text, f"tokenizer {path}", MAX_TOKENIZER_BYTES)
    if isinstance(data, list):
        return CharTokenizer(char_vocab(data, f"tokenizer {path}"))
    return BpeTokenizer.from_json(text, f"tokenizer {path}", checked=True)


def in_folder(folder):
    """The tokenizer saved in a run or export folder (tokenizer.json before vocab.json), or None."""
    path = _folder_file(folder)
    return from_file(path) if path is not None else None


def find(file=None, run=None, checkpoint: dict | None = None):
    """The tokenizer of a model: `--tokenizer FILE`, else the run folder's, else the checkpoint's (or None).
    A file whose vocabulary differs from the one the checkpoint was trained with is an error: its ids
    would name other tokens than the weights learned."""
    path = Path(file) if file else _folder_file(run) if run else None
    if path is None:
        return from_state(checkpoint)
    found = from_file(path)
    trained = from_state(checkpoint)
    if trained is not None:
        differs = vocabulary_difference(found, trained)
        if differs:
            raise UserError(f"{path}: its vocabulary differs from the one the checkpoint was trained with "
                            f"({differs}); remove the file or give the run's own"
                            + (" (drop --tokenizer: the checkpoint carries it)" if file else ""))
    return found


def _folder_file(folder):
    for name in (TOKENIZER_FILE, VOCAB_FILE):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def vocabulary_difference(a, b) -> str:
    """'' when two tokenizers give every id the same token, else what differs (for a message)."""
    if a.kind != b.kind:
        return f"a {a.kind} tokenizer, the checkpoint's is {b.kind}"
    if a.size != b.size:
        return f"{a.size} tokens, the checkpoint's has {b.size}"
    va = a.vocab if a.kind == "char" else sorted(a.tok.get_vocab().items(), key=lambda kv: kv[1])
    vb = b.vocab if b.kind == "char" else sorted(b.tok.get_vocab().items(), key=lambda kv: kv[1])
    for i, (x, y) in enumerate(zip(va, vb)):
        if x != y:
            x, y = (x, y) if a.kind == "char" else (x[0], y[0])
            return f"id {i} is {x!r} in the file, {y!r} in the checkpoint"
    return ""


def token_labels(tok) -> list[str]:
    """Each id's text, quoted so that spaces and newlines show (`build predict` of a language model)."""
    return [repr(tok.decode([i])) for i in range(tok.size)]


def from_metadata(meta: dict):
    """The tokenizer an exported file's `builder.*` metadata carries, or None."""
    if meta.get("tokenizer"):
        return BpeTokenizer.from_json(meta["tokenizer"], "metadata builder.tokenizer")
    return CharTokenizer(char_vocab(meta["vocab"], "metadata builder.vocab")) if meta.get("vocab") else None
