"""Tokenized litdata chunks, cached under cache_dir/chunks/<split>-<key>.

Both modes store a flat token stream read back with ``TokensLoader(block_size=seq_len + 1)``;
each item is one row of seq_len + 1 tokens (inputs are row[:-1], targets row[1:]):
- packing: every document followed by EOS, concatenated; rows cut the stream anywhere. The
  stream does not depend on seq_len, so the key leaves it out and one cache serves every length.
- truncation (packing=False, the GPAS recipe): each document + EOS is cut into rows of its own,
  seq_len + 1 tokens at a stride of seq_len (every next-token pair appears once; a document of at
  most seq_len + 1 tokens is one row, exactly GPAS's truncate-or-pad), the last row padded with
  PAD (the dtype's largest value), which the collate turns into target -100.

A build goes to a temporary folder renamed into place when complete, under a file lock, so a
killed build never leaves a cache that reads as complete. Next to litdata's files each cache has
counts.npy (frequency of every token id, pads excluded) and meta.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import secrets
import shutil
import signal
import tempfile
import threading
from pathlib import Path

import numpy as np
from filelock import FileLock

from .corpus import Document, fingerprint
from .tokenizers import Tokenizer

FORMAT = 1  # bump when the stored layout changes: every key changes with it
CHUNK_BYTES = "64MB"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size < np.iinfo(np.uint16).max else np.dtype(np.int32)


def pad_id(dtype) -> int:
    return int(np.iinfo(dtype).max)


def cache_key(docs_fp: str, tokenizer_fp: str, seq_len: int, packing: bool, split: str) -> str:
    spec = {"format": FORMAT, "corpus": docs_fp, "tokenizer": tokenizer_fp, "packing": packing,
            "seq_len": None if packing else seq_len, "split": split}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def build_chunks(docs: list[Document], tokenizer: Tokenizer, seq_len: int, packing: bool, split: str,
                 cache_dir: str | Path) -> Path:
    """The folder of litdata chunks for these documents, built unless cached."""
    key = cache_key(fingerprint(docs), tokenizer.fingerprint, seq_len, packing, split)
    root = Path(cache_dir) / "chunks"
    final = root / f"{split}-{key}"
    if (final / "meta.json").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if (final / "meta.json").exists():  # built by another process while we waited
            return final
        for stale in [*root.glob(f".{final.name}.tmp*"), final]:  # a killed build's (it held this lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f".{final.name}.tmp{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()  # not mkdtemp: its 0700 mode would stay on the renamed cache
        try:
            meta = _write(tmp, docs, tokenizer, seq_len, packing)
            (tmp / "meta.json").write_text(json.dumps({**meta, "split": split, "key": key}, indent=1))
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _write(out: Path, docs: list[Document], tokenizer: Tokenizer, seq_len: int, packing: bool) -> dict:
    """Tokenize, write litdata chunks to out/data and counts.npy to out; return the metadata."""
    dtype = token_dtype(tokenizer.vocab_size)
    pad = pad_id(dtype)
    items, counts, n_tokens = [], np.zeros(tokenizer.vocab_size, dtype=np.int64), 0
    for ids in tokenizer.encode_batch([d.text for d in docs]):
        if len(ids) and ids.max() >= tokenizer.vocab_size:
            raise ValueError(f"tokenizer {tokenizer.name} produced id {ids.max()}, beyond its vocab_size "
                             f"{tokenizer.vocab_size}")
        seq = np.append(ids.astype(dtype, copy=False), np.asarray(tokenizer.eos_id, dtype=dtype))
        counts += np.bincount(seq, minlength=tokenizer.vocab_size)
        n_tokens += len(seq)
        items.append(seq if packing else _rows(seq, seq_len, pad))
    _optimize(items, out / "data")
    np.save(out / "counts.npy", counts)
    return {"documents": len(docs), "tokens": n_tokens, "dtype": dtype.name, "pad": pad, "packing": packing,
            "seq_len": None if packing else seq_len, "tokenizer": tokenizer.fingerprint, "corpus": fingerprint(docs)}


def _rows(seq: np.ndarray, seq_len: int, pad: int) -> np.ndarray:
    """seq cut into rows of seq_len + 1 at a stride of seq_len, flattened; the last padded."""
    n = max(1, -(-(len(seq) - 1) // seq_len))
    rows = np.full((n, seq_len + 1), pad, dtype=seq.dtype)
    for i in range(n):
        part = seq[i * seq_len: i * seq_len + seq_len + 1]
        rows[i, : len(part)] = part
    return rows.reshape(-1)


def _emit(item):
    return item


def _optimize(items: list, output_dir: Path, fn=_emit, workers: int = 1) -> None:
    """litdata.optimize of fn over items (one worker unless told), with three of its process-wide side effects
    contained:
    - it starts workers with 'spawn' (~7 s of imports per call on 2 cores): use 'fork';
    - it installs a SIGINT handler that calls os._exit(0) and never removes it (Ctrl-C in a later
      training would exit with status 0): the previous handler is put back;
    - it empties its shared cache folders (/tmp/chunks, /tmp/data), racing any concurrent
      optimize: each call gets private ones.
    """
    from litdata import TokensLoader, optimize

    fork = "fork" in mp.get_all_start_methods()
    in_main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if in_main else None
    with tempfile.TemporaryDirectory(dir=output_dir.parent) as scratch, _env(
        DATA_OPTIMIZER_CACHE_FOLDER=f"{scratch}/chunks", DATA_OPTIMIZER_DATA_CACHE_FOLDER=f"{scratch}/data",
        # tokenizers warns in a forked child after using its thread pool unless this is set
        TOKENIZERS_PARALLELISM=os.environ.get("TOKENIZERS_PARALLELISM", "false")):
        try:
            optimize(fn=fn, inputs=items, output_dir=str(output_dir), chunk_bytes=CHUNK_BYTES,
                     item_loader=TokensLoader(), num_workers=workers, reorder_files=False, keep_data_ordered=True,
                     start_method="fork" if fork else None, verbose=False)
        finally:
            if in_main:
                signal.signal(signal.SIGINT, handler)
    if not (output_dir / "index.json").exists():
        raise RuntimeError(f"litdata.optimize wrote no index.json in {output_dir}")


@contextlib.contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def read_meta(path: Path) -> dict:
    return json.loads((Path(path) / "meta.json").read_text())
