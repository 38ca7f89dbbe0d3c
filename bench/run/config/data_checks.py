"""Checks that touch data: the vocabulary a tokenizer file or prepared dataset decides, and whether
every corpus can be read. Called while a matrix is expanded (before any cell id is hashed, so the id
and the record's config_hash agree) and memoized per process: each file is read once."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from ...errors import ConfigError
from .presets import config_vocab_size
from .schema import DataConfig, RunConfig
from .identity import _shallow

# The corpora that ship with the harness (datamodules.BUNDLED; a test holds them equal). A data config
# that names only these and a config-decided tokenizer has nothing to check, and needs no import of
# datamodules, which loads Lightning (seconds of a `bench plan`).
SHIPPED = ("bundled", "kjv")
CONFIG_TOKENIZERS = ("bytes", "bpe")


def needs_data(data: DataConfig) -> bool:
    """Whether checking this data config must read a file, a folder or an object store."""
    specs = [data.corpus, data.ood_corpus, *data.eval.values()]
    return data.tokenizer not in CONFIG_TOKENIZERS or any(s and s not in SHIPPED for s in specs)


def _key(data: DataConfig) -> str:
    return json.dumps(_shallow(data), sort_keys=True, default=str)


def decide_vocab_size(data: DataConfig, configured: int) -> int:
    """The tokenizer decides the vocabulary: bytes 256, a BPE its configured size, a tokenizer file
    its own size (read here), 'dataset' the size in the prepared corpus's meta.json. The only
    decision: the engine checks that the data module agrees and never sets it."""
    if data.tokenizer in CONFIG_TOKENIZERS:
        return config_vocab_size(data.tokenizer, data.bpe_vocab_size, configured)
    if data.tokenizer == "dataset":
        return _dataset_vocab(_key(data)) or configured
    path = Path(data.tokenizer).expanduser()
    if not path.is_file():
        raise ConfigError(f"tokenizer file not found: {data.tokenizer} (use 'bytes', 'bpe', 'dataset', or a path "
                          "to a tokenizer.json or tiktoken file)")
    stat = path.stat()
    return _file_vocab(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _file_vocab(path: str, mtime_ns: int, size: int) -> int:
    """The size the data module will give the model: the file loaded as the run loads it."""
    from datamodules import TokenizerError, load_tokenizer

    try:
        return load_tokenizer(path).vocab_size
    except TokenizerError as e:
        raise ConfigError(str(e)) from None


@lru_cache(maxsize=64)
def _dataset_vocab(key: str) -> int | None:
    from datamodules import CorpusError, PreparedCorpus, is_prepared

    data = DataConfig(**json.loads(key))
    if not is_prepared(data.corpus):
        return None  # check_data says why 'dataset' needs a prepared corpus
    try:
        return PreparedCorpus.open(data.corpus, data.storage_options, data.cache_dir,
                                   data.max_cache_size).meta["tokenizer"]["vocab_size"]
    except CorpusError as e:
        raise ConfigError(str(e)) from None


@lru_cache(maxsize=256)
def _check_data(key: str, block_size: int) -> None:
    from datamodules import CorpusError, check_data

    try:
        check_data(DataConfig(**json.loads(key)), block_size)
    except CorpusError as e:
        raise ConfigError(str(e)) from None


def check(cfg: RunConfig) -> RunConfig:
    """Decide what the data decides (the vocabulary) and check that every corpus can be read; one
    line (ConfigError) otherwise. Returns cfg, updated in place."""
    cfg.model.vocab_size = decide_vocab_size(cfg.data, cfg.model.vocab_size)
    if needs_data(cfg.data):
        _check_data(_key(cfg.data), cfg.model.block_size)
    return cfg
