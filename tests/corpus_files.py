"""Corpora as `bench data prepare` reads them, shared by the unit and e2e tests of prepared data: real
paragraphs of the bundled plays in every input format, and the token streams a prepared split holds."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from datamodules import load_corpus


def paragraphs(n_docs: int, offset: int = 0) -> list[str]:
    """Real text: paragraphs of the bundled plays."""
    texts = [p for d in load_corpus("bundled")[:6] for p in d.text.split("\n\n") if len(p) > 40]
    return texts[offset: offset + n_docs]


def write_sources(folder: Path) -> list[str]:
    """Every input format once; returns the documents in file order."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    folder.mkdir(parents=True, exist_ok=True)
    docs = paragraphs(200)
    (folder / "a.txt").write_text(docs[0])
    (folder / "b.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs[1:50]) + "\n")
    with gzip.open(folder / "c.json.gz", "wt") as f:
        f.write("".join(json.dumps({"text": t, "url": "x"}) + "\n" for t in docs[50:100]))
    (folder / "d.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(
        "".join(json.dumps({"text": t}) + "\n" for t in docs[100:150]).encode()))
    sub = folder / "sub"
    sub.mkdir(exist_ok=True)
    pq.write_table(pa.table({"text": docs[150:200]}), sub / "e.parquet", row_group_size=16)
    (sub / "notes.md").write_text("not a source")
    return docs


def stream_tokens(path: Path, split: str) -> np.ndarray:
    """Every token of a split, in stored order: each chunk's tokens after its header, as litdata's
    TokensLoader reads them (header: item count and offsets, uint32). Per token through litdata
    (``streamed_by_litdata``) takes seconds per million; test_prepare checks the two agree."""
    from litdata.constants import _NUMPY_DTYPES_MAPPING

    index = json.loads((path / split / "index.json").read_text())
    serializer, dtype = index["config"]["data_format"][0].split(":")
    assert serializer == "no_header_numpy", serializer
    parts = []
    for chunk in index["chunks"]:
        raw = (path / split / chunk["filename"]).read_bytes()
        tokens = np.frombuffer(raw, dtype=_NUMPY_DTYPES_MAPPING[int(dtype)], offset=(1 + chunk["chunk_size"] + 1) * 4)
        assert len(tokens) == chunk["dim"], (chunk, len(tokens))
        parts.append(tokens)
    return np.concatenate(parts) if parts else np.zeros(0)


def streamed_by_litdata(path: Path, split: str) -> np.ndarray:
    """stream_tokens through litdata's reader, one token at a time (block_size 1: no tail dropped)."""
    from litdata import StreamingDataset, TokensLoader

    ds = StreamingDataset(str(path / split), item_loader=TokensLoader(block_size=1))
    return np.concatenate([ds[i] for i in range(len(ds))]) if len(ds) else np.zeros(0)


def documents(tokens: np.ndarray) -> list[bytes]:
    """Split a bytes-tokenizer stream at EOS (0)."""
    return [bytes(part.astype(np.uint8).tolist()) for part in np.split(tokens, np.flatnonzero(tokens == 0))[:-1]
            for part in [part[part != 0]]]
