"""Text columns of a CSV (`text: [review]`): each column tokenised into padded ids and a mask, two inputs named
`<column>` (int64 ids) and `<column>_mask` (1 for tokens, 0 for padding).

The tokenizer is a Hugging Face `tokenizers` WordPiece (default) or byte-level BPE trained on the training
split only (`tokenizer: {type: wordpiece, vocab_size: 2000}`), or a given `tokenizer.json`
(`tokenizer: path/tokenizer.json`). It travels in the layout (checkpoint `data_layout`, ONNX `builder.data`),
so `build predict` on a CSV with raw text encodes it with exactly the training ids.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from builder.core.errors import UserError

KEYS = ("tokenizer", "max_length")  # CSV keys read here (besides `text:` itself, read by the CSV reader)
TYPES = ("wordpiece", "bpe")
SPECIALS = ["[PAD]", "[UNK]"]
MAX_TOKENIZER_BYTES = 50 * 2**20


def check(cfg: dict) -> dict:
    """{tokenizer, max_length} of a CSV source with `text:`, or a one-line error naming the key."""
    tok, length = cfg.get("tokenizer", {"type": "wordpiece", "vocab_size": 2000}), cfg.get("max_length", 64)
    if isinstance(tok, str):
        if not Path(tok).is_file():
            raise UserError(f"train.data.tokenizer: no such tokenizer.json: {tok}")
    elif not isinstance(tok, Mapping) or tok.get("type", "wordpiece") not in TYPES or \
            set(tok) - {"type", "vocab_size", "min_frequency"}:
        raise UserError(f"train.data.tokenizer: a tokenizer.json path or {{type: wordpiece|bpe, vocab_size: N, "
                        f"min_frequency: M}}, got {tok!r}")
    elif not isinstance(tok.get("vocab_size", 2000), int) or not 10 <= tok.get("vocab_size", 2000) <= 1_000_000:
        raise UserError(f"train.data.tokenizer.vocab_size: a whole number from 10 to 1000000, got {tok.get('vocab_size')!r}")
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= 100_000:
        raise UserError(f"train.data.max_length: tokens per text, a whole number from 1 to 100000, got {length!r}")
    if not cfg.get("text"):
        raise UserError("train.data.tokenizer/max_length go with text: [column, ...] on a csv source")
    return {"tokenizer": tok, "max_length": length}


def train(texts, cfg):
    """A tokenizers.Tokenizer trained on `texts` (the training split's), or loaded from the given file."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if isinstance(cfg, str):
        if Path(cfg).stat().st_size > MAX_TOKENIZER_BYTES:
            raise UserError(f"train.data.tokenizer: {cfg} is larger than {MAX_TOKENIZER_BYTES // 2**20} MiB")
        return from_json(Path(cfg).read_text(encoding="utf-8"), cfg)
    size, freq = int(cfg.get("vocab_size", 2000)), int(cfg.get("min_frequency", 1))
    if cfg.get("type", "wordpiece") == "bpe":
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=size, min_frequency=freq, special_tokens=SPECIALS,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(list(texts), trainer=trainer)
        return tok
    normalizer, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    tok = Tokenizer(models.WordPiece(wordpiece_vocab(texts, size, freq, normalizer, pre), unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre, decoders.WordPiece()
    return tok


def wordpiece_vocab(texts, size: int, min_frequency: int, normalizer, pre_tokenizer) -> dict:
    """A WordPiece vocabulary that the same texts always give the same ids: the special tokens, every
    character (alone and as a `##` continuation, so no word is unknown), then the most frequent whole words
    (ties in alphabetical order) up to `size`. Hugging Face's WordPieceTrainer numbers its tokens in the
    order of a randomly seeded hash map: the same spec and seed trained a different vocabulary, so a
    different model, in every process."""
    from collections import Counter

    counts = Counter(w for t in texts for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(t)))
    chars = sorted({c for w in counts for c in w})
    tokens = list(dict.fromkeys(SPECIALS + chars + ["##" + c for c in chars]))
    words = [w for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_frequency
             and len(w) > 1 and w not in tokens]
    tokens += words[:max(0, size - len(tokens))]
    return {t: i for i, t in enumerate(tokens)}


def from_json(text: str, where="tokenizer"):
    from tokenizers import Tokenizer
    try:
        return Tokenizer.from_str(text)
    except Exception as e:  # the Rust side raises Exception with a serde message
        raise UserError(f"{where}: not a tokenizers JSON file ({str(e).splitlines()[0][:200]})") from None


def encode(tok, texts, max_length: int):
    """(ids [N, max_length] int64, mask [N, max_length] int64): truncated and padded with the pad token."""
    pad = next((tok.token_to_id(t) for t in ("[PAD]", "<pad>", "<|pad|>") if tok.token_to_id(t) is not None), 0)
    ids = np.full((len(texts), max_length), pad, dtype=np.int64)
    mask = np.zeros((len(texts), max_length), dtype=np.int64)
    for i, enc in enumerate(tok.encode_batch(list(texts))):
        got = enc.ids[:max_length]
        ids[i, :len(got)] = got
        mask[i, :len(got)] = 1
    return ids, mask


def add_fields(fields, n_inputs, info, train_rows, cfg=None):
    """Insert each text column's ids and mask after the other inputs. The tokenizer is trained on the
    `train_rows` (None: all rows) unless the layout already carries one (other splits, predict)."""
    texts = info.pop("text", None)
    if not texts:
        return fields, n_inputs
    layout = info["layout"]
    carried = layout.get("text") or {}
    made, added, names = {}, [], []
    for column, values in texts.items():
        if column in carried:
            tok, length = from_json(carried[column]["tokenizer"]), carried[column]["max_length"]
        else:
            chosen = values if train_rows is None else [values[i] for i in np.sort(train_rows)]
            tok, length = train(chosen, cfg["tokenizer"]), cfg["max_length"]
        made[column] = {"tokenizer": tok.to_str(), "max_length": length, "vocab_size": tok.get_vocab_size()}
        added += list(encode(tok, values, length))
        names += [column, f"{column}_mask"]
    layout["text"] = made
    info["inputs"] = list(info.get("inputs") or [None] * n_inputs)[:n_inputs] + names
    info["vocab_size"] = max(m["vocab_size"] for m in made.values())
    return [*fields[:n_inputs], *added, *fields[n_inputs:]], n_inputs + len(added)
