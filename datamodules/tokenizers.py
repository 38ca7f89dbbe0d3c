"""Tokenizers: 'bytes', 'bpe' (trained here, cached), or a tokenizer.json / tiktoken file.

Every tokenizer has ``vocab_size``, ``eos_id``, ``fingerprint`` (sha256 of what defines it),
``encode(text) -> list[int]``, ``decode(ids) -> str`` and ``encode_batch(texts) -> list[np.ndarray]``.
``encode`` adds no special tokens: the data module appends ``eos_id`` after every document, the
document separator of both packing and truncation modes.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from filelock import FileLock

from .corpus import Document, fingerprint

EOS = "<|endoftext|>"
# Special tokens looked for, in this order, as the document separator of a tokenizer.json.
EOS_CANDIDATES = (EOS, "<|end_of_text|>", "</s>", "<eos>", "<|eot_id|>", "[SEP]")
# Split pattern for tiktoken files (the files hold only ranks): the cl100k_base / GPT-4 regex.
TIKTOKEN_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
                    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")


class TokenizerError(ValueError):
    """A tokenizer that cannot be built or loaded; the message is one line."""


class Tokenizer:
    name: str
    vocab_size: int
    eos_id: int
    fingerprint: str

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(self.encode(t), dtype=np.int64) for t in texts]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, vocab_size={self.vocab_size}, eos_id={self.eos_id})"


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes, vocab 256. Byte 0 (NUL, absent from real text) is the document separator, so
    the vocabulary stays 256; a NUL inside a text would read as a document boundary."""

    name, vocab_size, eos_id = "bytes", 256, 0
    fingerprint = hashlib.sha256(b"bytes/utf-8/eos=0/v1").hexdigest()

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8) for t in texts]


class HFTokenizer(Tokenizer):
    """A `tokenizers` Tokenizer (tokenizer.json), e.g. the byte-level BPE trained by train_bpe."""

    def __init__(self, tok, name: str, vocab_size: int | None = None):
        self.tok, self.name = tok, name
        # The model's embedding size: a BPE that found fewer merges than asked still gets the
        # configured vocabulary (bench.run.config.schema.vocab_size reads it from the config alone).
        self.vocab_size = max(tok.get_vocab_size(with_added_tokens=True), vocab_size or 0)
        self.eos_id = next((tok.token_to_id(t) for t in EOS_CANDIDATES if tok.token_to_id(t) is not None), None)
        if self.eos_id is None:
            raise TokenizerError(f"tokenizer {name} has none of the end-of-text tokens {', '.join(EOS_CANDIDATES)}")
        self.fingerprint = hashlib.sha256(tok.to_str().encode()).hexdigest()

    @classmethod
    def from_file(cls, path: Path) -> HFTokenizer:
        from tokenizers import Tokenizer as _Tok

        try:
            tok = _Tok.from_file(str(path))
        except Exception as e:  # the library raises a bare Exception on bad JSON
            raise TokenizerError(f"cannot read tokenizer file {path}: {str(e).splitlines()[0]}") from None
        return cls(tok, str(path))

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(e.ids, dtype=np.int64) for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def save(self, path: Path) -> None:
        self.tok.save(str(path))


class TiktokenTokenizer(Tokenizer):
    """A tiktoken BPE file ("base64-token rank" per line), split with TIKTOKEN_PATTERN; the
    end-of-text token is added after the highest rank. Read directly, not through
    tiktoken.load, whose cache is keyed by the path string and would serve a stale copy."""

    def __init__(self, path: Path):
        import tiktoken

        data = path.read_bytes()
        try:
            ranks = {base64.b64decode(t): int(r) for t, r in (line.split() for line in data.splitlines() if line)}
        except ValueError:
            raise TokenizerError(f"not a tokenizer.json or tiktoken BPE file: {path}") from None
        self.name = str(path)
        self.eos_id = max(ranks.values()) + 1
        self.vocab_size = self.eos_id + 1
        self.enc = tiktoken.Encoding(path.name, pat_str=TIKTOKEN_PATTERN, mergeable_ranks=ranks,
                                     special_tokens={EOS: self.eos_id})
        self.fingerprint = hashlib.sha256(data + TIKTOKEN_PATTERN.encode()).hexdigest()

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def decode(self, ids) -> str:
        return self.enc.decode([int(i) for i in ids])

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(ids, dtype=np.int64) for ids in self.enc.encode_ordinary_batch(texts)]


def train_bpe(texts: list[str], vocab_size: int) -> HFTokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenization, no prefix space) with EOS as token 0."""
    from tokenizers import Tokenizer as _Tok
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if vocab_size < 257:
        raise TokenizerError(f"bpe_vocab_size must exceed 256 (the byte alphabet + EOS), got {vocab_size}")
    tok = _Tok(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return HFTokenizer(tok, "bpe", vocab_size)


def bpe(cfg, train_docs: list[Document], cache_dir: Path) -> Tokenizer:
    """The BPE trained on this training split, from cache_dir/tokenizers if built before."""
    path = cache_dir / "tokenizers" / f"bpe-{cfg.bpe_vocab_size}-{fingerprint(train_docs)[:16]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            train_bpe([d.text for d in train_docs], cfg.bpe_vocab_size).save(tmp)
            os.replace(tmp, path)  # atomic: a killed training leaves no file that reads as done
    tok = HFTokenizer.from_file(path)
    tok.name, tok.vocab_size = "bpe", max(tok.vocab_size, cfg.bpe_vocab_size)
    return tok


# name -> builder(data_cfg, training documents, cache dir). Any other value is a file path.
TOKENIZERS: dict[str, Callable[..., Tokenizer]] = {
    "bytes": lambda cfg, docs, cache_dir: ByteTokenizer(),
    "bpe": bpe,
}


def build_tokenizer(cfg, train_docs: list[Document], cache_dir: str | Path) -> Tokenizer:
    """The tokenizer DataConfig ``cfg`` names; train_docs are only read to train a BPE."""
    name = str(cfg.tokenizer)
    if name in TOKENIZERS:
        return TOKENIZERS[name](cfg, train_docs, Path(cache_dir))
    return load_tokenizer(name)


def load_tokenizer(name: str) -> Tokenizer:
    """A tokenizer file: tokenizer.json (any .json) or a tiktoken BPE file (anything else)."""
    path = Path(name).expanduser()
    if not path.is_file():
        if "/" not in name and "." not in name:  # a bare word is a misspelt registry name
            from models.names import check_choice  # the harness's one "did you mean" error

            check_choice("tokenizer", name, TOKENIZERS)
        raise TokenizerError(f"tokenizer file not found: {name}")
    if path.suffix == ".json":
        return HFTokenizer.from_file(path)
    return TiktokenTokenizer(path)
