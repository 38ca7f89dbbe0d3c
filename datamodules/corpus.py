"""Documents: the bundled corpora and local files, a fixed train/val split by document, fingerprints.

A corpus spec is 'bundled' (Shakespeare), 'kjv' (King James Bible), or a comma-separated list of
local files or folders: .txt (one document per file), .jsonl (one document per line, field
'text', optional 'title'), .parquet (column 'text', optional 'title'); .txt and .jsonl may also
be .gz or .xz compressed. Folders are searched recursively in sorted path order.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

def _data_dir() -> Path:
    """The bundled corpora: datamodules/bundled in an installed wheel, else the checkout's data/."""
    package = Path(str(resources.files("datamodules")))
    return package / "bundled" if (package / "bundled").is_dir() else package.parent / "data"


DATA = _data_dir()
BUNDLED = {"bundled": DATA / "shakespeare.jsonl.xz", "kjv": DATA / "kjv.jsonl.xz"}
SUFFIXES = (".txt", ".jsonl", ".parquet")
# Part of every split key: changing it would move documents between train and val, so never do.
SPLIT_SEED = "llm-arch-bench/split/v1"


class CorpusError(ValueError):
    """A corpus that cannot be read; the message is one line naming the path."""


@dataclass(frozen=True)
class Document:
    title: str
    text: str


def check_corpus(spec: str) -> None:
    """Fail fast, before anything trains, on a corpus path that does not exist."""
    if spec in BUNDLED:
        return
    if "://" in spec:
        raise CorpusError(f"remote corpora are not supported by the data module: {spec}")
    for part in [p.strip() for p in str(spec).split(",") if p.strip()]:
        path = Path(part).expanduser()
        if not path.exists():
            raise CorpusError(f"corpus path not found: {part} (use 'bundled', 'kjv', or .txt/.jsonl/.parquet "
                              "files or folders)")
        if path.is_file() and not _kind(path):
            raise CorpusError(f"unsupported corpus file (want .txt, .jsonl, .parquet): {part}")
        if path.is_dir() and not any(p.is_file() and _kind(p) for p in path.rglob("*")):
            raise CorpusError(f"{part} holds no .txt, .jsonl or .parquet files and no meta.json of a dataset "
                              "prepared by `bench data prepare`")


def load_corpus(spec: str) -> list[Document]:
    """Every document of a corpus spec, in a deterministic order; empty texts are dropped."""
    if spec in BUNDLED:
        return _read_jsonl(BUNDLED[spec], BUNDLED[spec].name)
    if "://" in spec:
        raise CorpusError(f"remote corpora are not supported by the data module: {spec}")
    docs: list[Document] = []
    for part in [p.strip() for p in str(spec).split(",") if p.strip()]:
        path = Path(part).expanduser()
        if not path.exists():
            raise CorpusError(f"corpus path not found: {part}")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p) and not p.name.startswith("."))
            if not files:
                raise CorpusError(f"no .txt, .jsonl or .parquet files under corpus folder: {part}")
            for f in files:
                docs += _read_file(f, f.relative_to(path).as_posix())
        else:
            if not _kind(path):
                raise CorpusError(f"unsupported corpus file (want .txt, .jsonl, .parquet): {part}")
            docs += _read_file(path, path.name)
    if not docs:
        raise CorpusError(f"corpus has no non-empty documents: {spec}")
    return docs


def _kind(path: Path) -> str | None:
    """'.txt', '.jsonl' or '.parquet' for a readable file (compression suffix stripped), else None."""
    suffixes = path.suffixes[-2:]
    if suffixes and suffixes[-1] in (".gz", ".xz"):
        return suffixes[0] if len(suffixes) == 2 and suffixes[0] in (".txt", ".jsonl") else None
    return path.suffix if path.suffix in SUFFIXES else None


def _open_text(path: Path):
    opener = {".gz": gzip.open, ".xz": lzma.open}.get(path.suffix, open)
    return opener(path, "rt", encoding="utf-8")


def _read_file(path: Path, name: str) -> list[Document]:
    kind = _kind(path)
    if kind == ".txt":
        with _open_text(path) as f:
            text = f.read()
        return [Document(name, text)] if text else []
    if kind == ".jsonl":
        return _read_jsonl(path, name)
    return _read_parquet(path, name)


def _read_jsonl(path: Path, name: str) -> list[Document]:
    docs = []
    with _open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                text = rec["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise CorpusError(f"{path}:{n}: expected a JSON object with a 'text' field") from None
            if text:
                docs.append(Document(str(rec.get("title") or f"{name}:{n}"), text))
    return docs


def _read_parquet(path: Path, name: str) -> list[Document]:
    import pyarrow.parquet as pq

    columns = pq.read_schema(path).names
    if "text" not in columns:
        raise CorpusError(f"{path}: parquet file has no 'text' column (columns: {', '.join(columns)})")
    table = pq.read_table(path, columns=[c for c in ("title", "text") if c in columns]).to_pydict()
    titles = table.get("title") or [None] * len(table["text"])
    return [Document(str(t or f"{name}:{i}"), x) for i, (t, x) in enumerate(zip(titles, table["text"])) if x]


def split_documents(docs: list[Document], val_fraction: float) -> tuple[list[Document], list[Document]]:
    """(train, val), each in corpus order. The val documents are the round(val_fraction * n) ones
    (at least 1, at most n - 1) whose sha256(SPLIT_SEED + title) is smallest: a fixed rule that
    depends on nothing but the titles, so the split never changes between runs or machines.
    A one-document corpus is cut at a line break near the end instead (its tail is val)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if len(docs) == 1:
        return _split_text(docs[0], val_fraction)
    n_val = min(len(docs) - 1, max(1, round(val_fraction * len(docs))))
    rank = sorted(range(len(docs)), key=lambda i: (_title_hash(docs[i].title), i))
    val = set(rank[:n_val])
    return [d for i, d in enumerate(docs) if i not in val], [d for i, d in enumerate(docs) if i in val]


def _title_hash(title: str) -> str:
    return hashlib.sha256(f"{SPLIT_SEED}\0{title}".encode()).hexdigest()


def _split_text(doc: Document, val_fraction: float) -> tuple[list[Document], list[Document]]:
    cut = int(len(doc.text) * (1 - val_fraction))
    nl = doc.text.find("\n", cut)
    cut = nl + 1 if 0 <= nl < len(doc.text) - 1 else cut
    if not 0 < cut < len(doc.text):
        raise CorpusError(f"document {doc.title!r} is too short to split into train and val")
    return [Document(doc.title + " [train]", doc.text[:cut])], [Document(doc.title + " [val]", doc.text[cut:])]


def fingerprint(docs: Iterable[Document]) -> str:
    """sha256 over the texts in order (each length-prefixed, so boundaries count)."""
    h = hashlib.sha256()
    for d in docs:
        b = d.text.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()
