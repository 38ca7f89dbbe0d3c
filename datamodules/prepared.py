"""A dataset written by `bench data prepare` (prepare.py), read from a local folder or object storage.

    ds = PreparedCorpus.open("s3://bucket/c4", {"endpoint_url": "http://127.0.0.1:9000"}, ".cache")
    tok = ds.tokenizer_for("dataset")        # or a spec whose fingerprint must equal the dataset's
    train = ds.stream("train", seq_len=1024, shuffle=True, seed=0)   # litdata StreamingDataset

A corpus spec is a prepared dataset when it is a URI (s3://, gs://, ...) or a local folder holding
meta.json. Remote files are cached under cache_dir/streams/<key>/, chunks within max_cache_size
(litdata evicts the oldest chunks beyond it). Opened datasets are remembered per process, so the
config check before training and the data module share one download of the metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from functools import cache
from pathlib import Path

import numpy as np

from .corpus import CorpusError
from .prepare import FORMAT
from .tokenizers import ByteTokenizer, Tokenizer, TokenizerError, load_tokenizer


def is_remote(spec: str) -> bool:
    return "://" in str(spec)


def is_prepared(spec: str | None) -> bool:
    """A URI, or a local folder with a meta.json (a litdata folder without one is an error, raised
    by open)."""
    if not spec:
        return False
    if is_remote(spec):
        return True
    path = Path(spec).expanduser()
    return path.is_dir() and ((path / "meta.json").exists() or (path / "index.json").exists()
                              or (path / "train" / "index.json").exists())


class PreparedCorpus:
    def __init__(self, uri: str, meta: dict, storage_options: dict, cache_dir: Path, max_cache_size: str):
        self.uri, self.meta, self.storage_options = uri.rstrip("/"), meta, dict(storage_options or {})
        self.cache_dir, self.max_cache_size = cache_dir, max_cache_size
        self._tokenizer: Tokenizer | None = None
        self._has_index: dict[str, bool] = {}

    @staticmethod
    def open(spec: str, storage_options: dict | None = None, cache_dir: str | Path = ".cache",
             max_cache_size: str = "50GB") -> PreparedCorpus:
        return _open(str(spec), json.dumps(storage_options or {}, sort_keys=True), str(cache_dir), max_cache_size)

    # -- what it is --

    @property
    def fingerprint(self) -> str:
        """sha256 over the names and contents of its source files."""
        return self.meta["fingerprint"]

    @property
    def packing(self) -> bool:
        return bool(self.meta["packing"])

    @property
    def val_split(self) -> str:
        return self.meta["val_split"]

    def tokens(self, split: str) -> int:
        return int(self.meta["splits"][split]["tokens"])

    def rows(self, split: str, seq_len: int) -> int:
        """Rows of seq_len + 1 tokens that TokensLoader cuts from the split."""
        return self.tokens(split) // (seq_len + 1) if self.packing else int(self.meta["splits"][split]["rows"])

    # -- the tokenizer it was prepared with --

    def stored_tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            t = self.meta["tokenizer"]
            self._tokenizer = ByteTokenizer() if t["file"] is None else load_tokenizer(str(self.fetch(t["file"])))
            if self._tokenizer.fingerprint != t["fingerprint"]:
                raise CorpusError(f"{self.uri}: its {t['file']} does not match the fingerprint in its meta.json")
        return self._tokenizer

    def tokenizer_for(self, spec: str) -> Tokenizer:
        """The cell's tokenizer ('dataset' = the stored one); one line if it is not the dataset's."""
        want = self.meta["tokenizer"]
        if spec == "dataset":
            return self.stored_tokenizer()
        if spec == "bpe":
            raise CorpusError(f"{self.uri} was tokenized when prepared: use --data.tokenizer dataset (its "
                              f"{want['name']}), not 'bpe'")
        try:
            tok = ByteTokenizer() if spec == "bytes" else load_tokenizer(spec)
        except TokenizerError as e:
            raise CorpusError(str(e)) from None
        if tok.fingerprint != want["fingerprint"]:
            raise CorpusError(f"{self.uri} was prepared with tokenizer {want['name']} (sha256 "
                              f"{want['fingerprint'][:12]}), not the cell's {spec} (sha256 {tok.fingerprint[:12]}): "
                              "use --data.tokenizer dataset")
        return tok

    # -- checks a run needs before it starts --

    def check(self, seq_len: int) -> None:
        if not self.packing and self.meta["seq_len"] != seq_len:
            raise CorpusError(f"{self.uri} holds rows truncated to {self.meta['seq_len']} tokens; the cell's "
                              f"block_size is {seq_len} (prepare it again with --truncate {seq_len})")
        for split in ("train", self.val_split):
            if split not in self.meta["splits"] or not self.has_index(split):
                raise CorpusError(f"{self.uri} has no '{split}' split (expected {self.uri}/{split}/index.json)")
            if self.rows(split, seq_len) < 1:
                raise CorpusError(f"the '{split}' split of {self.uri} has {self.tokens(split)} tokens, fewer than "
                                  f"one row of seq_len + 1 = {seq_len + 1}")

    def has_index(self, split: str) -> bool:
        if split not in self._has_index:  # once per process: every cell of a matrix is checked
            try:
                self._has_index[split] = self.fetch(f"{split}/index.json", refresh=True).is_file()
            except CorpusError:
                self._has_index[split] = False
        return self._has_index[split]

    # -- reading --

    def counts(self) -> np.ndarray:
        return np.load(self.fetch("counts.npy"))

    def split_dir(self, split: str) -> str:
        return f"{self.uri}/{split}"

    def stream(self, split: str, seq_len: int, shuffle: bool = False, seed: int = 0):
        from litdata import StreamingDataset, TokensLoader

        remote = is_remote(self.uri)
        return StreamingDataset(self.split_dir(split), item_loader=TokensLoader(block_size=seq_len + 1),
                                shuffle=shuffle, seed=seed, drop_last=shuffle,
                                cache_dir=str(self.local / split) if remote else None,
                                max_cache_size=self.max_cache_size,
                                storage_options=self.storage_options if remote else None)

    @property
    def local(self) -> Path:
        """The local cache of a remote dataset (the folder itself for a local one)."""
        if not is_remote(self.uri):
            return Path(self.uri)
        return self.cache_dir / "streams" / hashlib.sha256(self.uri.encode()).hexdigest()[:16]

    def fetch(self, name: str, refresh: bool = False) -> Path:
        """A file of the dataset, downloaded into the local cache if remote."""
        return _fetch(self.uri, name, self.local, self.storage_options, refresh)


def _fetch(uri: str, name: str, local: Path, storage_options: dict, refresh: bool) -> Path:
    dest = local / name
    if not is_remote(uri) or (dest.exists() and not refresh):
        return dest
    from litdata.streaming.downloader import get_downloader

    dest.parent.mkdir(parents=True, exist_ok=True)
    # a name of our own, then an atomic rename: DDP ranks fetch the same file at the same time
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}")
    try:
        get_downloader(uri, str(local), [], storage_options).download_file(f"{uri}/{name}", str(tmp))
    except Exception as e:  # noqa: BLE001 - every client raises its own types; the message is what matters
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CorpusError(f"cannot read {uri}/{name}: {first}") from None
    if not tmp.is_file():
        raise CorpusError(f"cannot read {uri}/{name}: not found")
    os.replace(tmp, dest)
    return dest


@cache
def _open(spec: str, options: str, cache_dir: str, max_cache_size: str) -> PreparedCorpus:
    storage_options = json.loads(options)
    uri = spec.rstrip("/") if is_remote(spec) else str(Path(spec).expanduser().resolve())
    probe = PreparedCorpus(uri, {}, storage_options, Path(cache_dir), max_cache_size)
    if not is_remote(uri):
        if not (Path(uri) / "meta.json").is_file():
            raise CorpusError(f"{spec} is a litdata folder without the meta.json of `bench data prepare` "
                              "(its tokenizer is unknown): prepare the corpus with `bench data prepare`")
        path = Path(uri) / "meta.json"
    else:
        try:
            path = probe.fetch("meta.json", refresh=True)
        except CorpusError as e:
            raise CorpusError(f"no prepared dataset at {spec} ({e})") from None
    try:
        meta = json.loads(path.read_text())
    except ValueError:
        raise CorpusError(f"{spec}: meta.json is not valid JSON") from None
    if meta.get("format") != FORMAT:
        raise CorpusError(f"{spec}: meta.json is not a `bench data prepare` dataset (format {meta.get('format')!r}, "
                          f"expected {FORMAT!r})")
    return PreparedCorpus(uri, meta, storage_options, Path(cache_dir), max_cache_size)
