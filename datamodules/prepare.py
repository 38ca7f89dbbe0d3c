"""`bench data prepare`: tokenize a large corpus into a litdata dataset that streams from disk or S3.

    prepare("corpus/", "tokenizer.json", "out/", workers=8)        # packing (default)
    prepare("c4/", "bytes", "out/", workers=8, truncate=1024)      # GPAS's truncate-or-pad rows

Output (upload the folder as is; every path in it is relative):
    out/meta.json         written last: the dataset is complete iff it exists (see prepared.py)
    out/tokenizer.*       the tokenizer file (absent for 'bytes'); its sha256 fingerprint is in meta.json
    out/counts.npy        frequency of every token id in train (the unigram 'learned nothing' reference)
    out/train/, out/val/  litdata TokensLoader datasets (index.json + chunk-*.bin)

Memory stays flat: each input file is read document by document (parquet by record batch) inside
a litdata worker, and litdata flushes chunks as they fill. The validation documents are chosen by
a hash of (file, document number) below val_fraction, so the split never needs the whole corpus.

Resumable: input files are processed in parts of ``files_per_part`` files; a part's chunks are
moved into place and its marker written only once litdata finished it and its token count checks
out, so a killed, stopped or disk-full run redoes at most the parts it was in. A rerun with other
settings into the same folder is refused. Two preparations into one folder never write it together:
the second waits for the first (out/.prepare.lock), then finds it done or resumes it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import itertools
import json
import lzma
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from filelock import FileLock, Timeout

from .chunks import _optimize, _rows, check_stop, pad_id, token_dtype
from .corpus import SPLIT_SEED, CorpusError
from .tokenizers import ByteTokenizer, Tokenizer, load_tokenizer

FORMAT = "llm-arch-bench/prepared/v1"
COMPRESSION = (".gz", ".xz", ".zst")
ENCODE_BATCH = 256  # documents per tokenizer call
COUNTS = ("documents", "tokens", "rows", "val_documents", "val_tokens", "val_rows", "bytes")


@dataclass(frozen=True)
class Plan:
    """What a preparation is: a rerun into the same folder must match it exactly."""

    sources: list  # [relative name, absolute path, size in bytes]
    tokenizer: str  # fingerprint
    packing: bool
    seq_len: int | None
    val_fraction: float


# ---- reading documents, one file at a time ----------------------------------------------------

def kind(path: Path) -> str | None:
    """'.txt', '.jsonl' (also '.json': JSON lines, as C4 ships) or '.parquet'; None if unsupported."""
    suffixes = path.suffixes[-2:]
    if suffixes and suffixes[-1] in COMPRESSION:
        inner = suffixes[0] if len(suffixes) == 2 else None
        return {".txt": ".txt", ".jsonl": ".jsonl", ".json": ".jsonl"}.get(inner)
    return {".txt": ".txt", ".jsonl": ".jsonl", ".json": ".jsonl", ".parquet": ".parquet"}.get(path.suffix)


def list_sources(spec: str) -> list[tuple[str, Path]]:
    """(name, path) of every input file of a comma-separated list of files/folders, sorted."""
    out = []
    for part in [p.strip() for p in str(spec).split(",") if p.strip()]:
        if "://" in part:
            raise CorpusError(f"bench data prepare reads local files; download {part} first")
        path = Path(part).expanduser()
        if not path.exists():
            raise CorpusError(f"source not found: {part}")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and kind(p) and not p.name.startswith("."))
            out += [(f"{path.name}/{f.relative_to(path).as_posix()}", f.resolve()) for f in files]
        elif kind(path):
            out.append((path.name, path.resolve()))
        else:
            raise CorpusError(f"unsupported source file (want .txt, .jsonl, .json, .parquet, optionally "
                              f".gz/.xz/.zst): {part}")
    if not out:
        raise CorpusError(f"no .txt, .jsonl, .json or .parquet files in {spec}")
    return out


def _open_text(path: Path):
    if path.suffix == ".zst":
        import zstandard

        return io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(open(path, "rb")), encoding="utf-8")
    opener = {".gz": gzip.open, ".xz": lzma.open}.get(path.suffix, open)
    return opener(path, "rt", encoding="utf-8")


def iter_texts(path: Path) -> Iterator[str]:
    """The document texts of one file, in order, read incrementally; empty texts are skipped."""
    k = kind(path)
    if k == ".txt":
        with _open_text(path) as f:
            text = f.read()
        if text:
            yield text
    elif k == ".jsonl":
        with _open_text(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line)["text"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise CorpusError(f"{path}:{n}: expected a JSON object with a 'text' field") from None
                if text:
                    yield text
    else:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        if "text" not in pf.schema_arrow.names:
            raise CorpusError(f"{path}: parquet file has no 'text' column")
        for batch in pf.iter_batches(columns=["text"], batch_size=1024):
            yield from (t for t in batch.column(0).to_pylist() if t)


def is_val(name: str, index: int, val_fraction: float) -> bool:
    """Document ``index`` of file ``name`` is held out: a fixed hash rule, no global pass needed."""
    h = hashlib.sha256(f"{SPLIT_SEED}\0{name}\0{index}".encode()).digest()
    return int.from_bytes(h[:8], "little") < val_fraction * 2**64


# ---- the litdata worker function -------------------------------------------------------------

_TOKENIZERS: dict[str, Tokenizer] = {}


def _tokenizer(spec: str) -> Tokenizer:
    if spec not in _TOKENIZERS:  # once per worker process
        _TOKENIZERS[spec] = ByteTokenizer() if spec == "bytes" else load_tokenizer(spec)
    return _TOKENIZERS[spec]


class TokenizeFile:
    """fn for litdata.optimize: one input file -> its training documents' token arrays (packing) or
    rows (truncation). Also writes, next to the part, the file's held-out documents (val-<i>.npy +
    lengths), token counts and a stats file; progress-<i>.json is refreshed for the progress bar."""

    def __init__(self, tokenizer: str, packing: bool, seq_len: int | None, val_fraction: float, work: str):
        self.tokenizer, self.packing, self.seq_len = tokenizer, packing, seq_len
        self.val_fraction, self.work = val_fraction, work

    def rows(self, n: int) -> int:
        """Truncation rows of a document of n tokens (EOS included), as chunks._rows cuts them."""
        return 0 if self.packing else max(1, -(-(n - 1) // self.seq_len))

    def __call__(self, job: tuple[int, str, str]):
        i, name, path = job
        tok = _tokenizer(self.tokenizer)
        dtype = token_dtype(tok.vocab_size)
        counts = np.zeros(tok.vocab_size, dtype=np.int64)
        val, stats = [], dict.fromkeys(COUNTS, 0)
        sha, last, size = hashlib.sha256(), time.monotonic(), os.path.getsize(path)
        with open(path, "rb") as f:  # the source's fingerprint: its raw bytes
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
        for texts, flags in _batches(iter_texts(Path(path)), name, self.val_fraction):
            for ids, held_out, text in zip(tok.encode_batch(texts), flags, texts):
                seq = np.append(ids.astype(dtype, copy=False), np.asarray(tok.eos_id, dtype=dtype))
                stats["bytes"] = min(size, stats["bytes"] + len(text))  # input read, for the progress bar
                if held_out:
                    val.append(seq)
                    stats["val_documents"] += 1
                    stats["val_tokens"] += len(seq)
                    stats["val_rows"] += self.rows(len(seq))
                    continue
                counts += np.bincount(seq, minlength=tok.vocab_size)
                stats["documents"] += 1
                stats["tokens"] += len(seq)
                stats["rows"] += self.rows(len(seq))
                yield seq if self.packing else _rows(seq, self.seq_len, pad_id(dtype))
            if time.monotonic() - last > 0.5:
                _write_json(Path(self.work) / f"progress-{i}.json", stats)
                last = time.monotonic()
        work = Path(self.work)
        lengths = np.array([len(v) for v in val], dtype=np.int64)
        np.save(work / f"val-{i}.npy", np.concatenate(val) if val else np.zeros(0, dtype=dtype))
        np.save(work / f"val-{i}.len.npy", lengths)
        np.save(work / f"counts-{i}.npy", counts)
        stats["bytes"] = size
        _write_json(work / f"progress-{i}.json", stats)
        _write_json(work / f"stats-{i}.json", {**stats, "name": name, "sha256": sha.hexdigest()})


def _batches(texts: Iterator[str], name: str, val_fraction: float):
    batch: list[str] = []
    for n, text in enumerate(texts):
        batch.append(text)
        if len(batch) == ENCODE_BATCH:
            yield batch, [is_val(name, n - len(batch) + 1 + j, val_fraction) for j in range(len(batch))]
            batch = []
    if batch:
        start = n - len(batch) + 1
        yield batch, [is_val(name, start + j, val_fraction) for j in range(len(batch))]


class ValRows:
    """fn for the validation split: one stored val-<i>.npy -> its documents (or their rows)."""

    def __init__(self, packing: bool, seq_len: int | None, pad: int):
        self.packing, self.seq_len, self.pad = packing, seq_len, pad

    def __call__(self, path: str):
        tokens, lengths = np.load(path), np.load(path[: -len(".npy")] + ".len.npy")
        for seq in np.split(tokens, np.cumsum(lengths)[:-1]) if len(lengths) else []:
            yield seq if self.packing else _rows(seq, self.seq_len, self.pad)


# ---- the driver --------------------------------------------------------------------------------

LOCK = ".prepare.lock"


def prepare(source: str, tokenizer: str, out: str | Path, workers: int = 1, truncate: int | None = None,
            val_fraction: float = 0.005, files_per_part: int | None = None,
            on_progress: Callable[[dict], None] | None = None, say: Callable[[str], None] | None = None) -> dict:
    """Tokenize ``source`` into ``out`` (see the module docstring); returns the metadata.
    on_progress(totals) is called about twice a second with the running counts; ``say`` tells that
    this run waits for another preparation of ``out``."""
    out = Path(out)
    if not 0 < val_fraction < 1:
        raise CorpusError(f"--val-fraction must lie in (0, 1), got {val_fraction}")
    if truncate is not None and truncate < 1:
        raise CorpusError(f"--truncate must be a positive sequence length, got {truncate}")
    list_sources(source)  # a missing or empty source fails before anything is written
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / LOCK))
    for n in itertools.count():
        try:
            lock.acquire(timeout=0 if n == 0 else 0.5)
            break
        except Timeout:
            if n == 0:
                (say or (lambda m: None))(f"another `bench data prepare` is writing {out}: waiting for it to finish")
            check_stop()
    try:
        meta = _prepare(source, tokenizer, out, workers, truncate, val_fraction, files_per_part, on_progress)
    finally:
        lock.release()
    # done: the lock file goes (a run that waited on it finds meta.json and writes nothing)
    with contextlib.suppress(OSError):
        (out / LOCK).unlink()
    return meta


def _prepare(source, tokenizer, out: Path, workers, truncate, val_fraction, files_per_part, on_progress) -> dict:
    tok = ByteTokenizer() if tokenizer == "bytes" else load_tokenizer(tokenizer)
    sources = list_sources(source)
    plan = Plan([[n, str(p), p.stat().st_size] for n, p in sources], tok.fingerprint, truncate is None, truncate,
                val_fraction)
    if (out / "meta.json").exists():
        meta = json.loads((out / "meta.json").read_text())
        if meta.get("plan") != asdict(plan):
            raise CorpusError(f"{out} already holds a different prepared dataset; choose another --out")
        return meta
    work = out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    if (work / "plan.json").exists() and json.loads((work / "plan.json").read_text()) != asdict(plan):
        raise CorpusError(f"{out} holds an unfinished preparation with other settings; delete it or choose "
                          "another --out")
    _write_json(work / "plan.json", asdict(plan))
    tok_file = None
    if tokenizer != "bytes":
        tok_file = "tokenizer" + (".json" if Path(tokenizer).suffix == ".json" else ".tiktoken")
        shutil.copyfile(tokenizer, out / tok_file)
    tok_spec = "bytes" if tok_file is None else str(out / tok_file)
    workers = max(1, int(workers))
    per_part = files_per_part or workers
    jobs = [(i, n, str(p)) for i, (n, p) in enumerate(sources)]
    parts = [jobs[k: k + per_part] for k in range(0, len(jobs), per_part)]
    (out / "train").mkdir(exist_ok=True)
    dtype = token_dtype(tok.vocab_size)
    fn = TokenizeFile(tok_spec, truncate is None, truncate, val_fraction, str(work / "files"))
    (work / "files").mkdir(exist_ok=True)
    with _Poller(work / "files", on_progress):
        for k, part in enumerate(parts):
            marker = work / f"part-{k:05d}.json"
            if marker.exists():
                continue
            check_stop()
            prefix = f"p{k:05d}-"
            for stale in (out / "train").glob(prefix + "*"):  # a kill while moving this part's chunks
                stale.unlink()
            tmp = work / f"part-{k:05d}"
            shutil.rmtree(tmp, ignore_errors=True)
            _optimize(part, tmp, fn=fn, workers=min(workers, len(part)),
                      tokens=lambda: _part_tokens(work / "files", [i for i, _, _ in part], truncate))
            chunks = json.loads((tmp / "index.json").read_text())
            for c in chunks["chunks"]:
                os.replace(tmp / c["filename"], out / "train" / (prefix + c["filename"]))
                c["filename"] = prefix + c["filename"]
            _write_json(marker, chunks)
            shutil.rmtree(tmp)
    stats = [json.loads((work / "files" / f"stats-{i}.json").read_text()) for i, _, _ in jobs]
    if not sum(s["documents"] for s in stats):
        raise CorpusError(f"no training documents in {source}")
    _merge_index([work / f"part-{k:05d}.json" for k in range(len(parts))], out / "train" / "index.json")
    counts = sum(np.load(work / "files" / f"counts-{i}.npy") for i, _, _ in jobs)
    np.save(out / "counts.npy", counts)
    val_files = [str(work / "files" / f"val-{i}.npy") for i, _, _ in jobs if stats[i]["val_documents"]]
    if not val_files:
        raise CorpusError(f"no document of {source} fell in the validation split (val_fraction {val_fraction}); "
                          "raise --val-fraction")
    check_stop()
    shutil.rmtree(out / "val", ignore_errors=True)
    _optimize(val_files, out / "val", fn=ValRows(truncate is None, truncate, pad_id(dtype)),
              workers=min(workers, len(val_files)),
              tokens=lambda: _part_tokens(work / "files", [i for i, _, _ in jobs], truncate, "val_"))
    tot = {k: sum(s[k] for s in stats) for k in COUNTS}
    meta = {
        "format": FORMAT, "tokenizer": {"name": tok.name if tok_file is None else tok_file,
                                        "fingerprint": tok.fingerprint, "file": tok_file,
                                        "vocab_size": tok.vocab_size, "eos_id": tok.eos_id},
        "packing": truncate is None, "seq_len": truncate, "dtype": dtype.name, "pad": pad_id(dtype),
        "splits": {"train": {"documents": tot["documents"], "tokens": tot["tokens"], "rows": tot["rows"]},
                   "val": {"documents": tot["val_documents"], "tokens": tot["val_tokens"], "rows": tot["val_rows"]}},
        "val_split": "val", "val_fraction": val_fraction,
        "fingerprint": hashlib.sha256(json.dumps([[s["name"], s["sha256"]] for s in stats]).encode()).hexdigest(),
        "sources": [{"name": s["name"], "sha256": s["sha256"], "documents": s["documents"] + s["val_documents"],
                     "tokens": s["tokens"] + s["val_tokens"]} for s in stats],
        "plan": asdict(plan),
    }
    _write_json(out / "meta.json", meta)  # last: from here on the dataset reads as complete
    shutil.rmtree(work)
    return meta


def _merge_index(parts: list[Path], dest: Path) -> None:
    """One litdata index.json over every part's (renamed) chunks, in part order."""
    indexes = [json.loads(p.read_text()) for p in parts]
    merged = {"chunks": [c for ix in indexes for c in ix["chunks"]], "config": indexes[0]["config"],
              "updated_at": str(time.time())}
    _write_json(dest, merged)


def _part_tokens(files: Path, indices: list[int], truncate: int | None, split: str = "") -> int:
    """The tokens litdata must have written for these input files (their stats): the documents'
    tokens when packing, their rows' when truncating."""
    stats = [json.loads((files / f"stats-{i}.json").read_text()) for i in indices]
    if truncate is None:
        return sum(s[f"{split}tokens"] for s in stats)
    return sum(s[f"{split}rows"] for s in stats) * (truncate + 1)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=1))
        os.replace(tmp, path)
    except BaseException:  # a full disk: no half-written temp file left
        tmp.unlink(missing_ok=True)
        raise


class _Poller:
    """Sums the workers' progress files twice a second for a progress callback (a background thread:
    litdata.optimize must run in the main thread, where it installs a signal handler)."""

    def __init__(self, folder: Path, callback):
        self.folder, self.callback, self.stop = folder, callback, threading.Event()

    def totals(self) -> dict:
        tot = dict.fromkeys(COUNTS, 0)
        for p in self.folder.glob("progress-*.json"):
            try:
                for k, v in json.loads(p.read_text()).items():
                    tot[k] += v
            except (OSError, ValueError):
                pass  # being replaced
        return tot

    def _run(self):
        while not self.stop.wait(0.5):
            self.callback(self.totals())

    def __enter__(self):
        if self.callback:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.callback:
            self.thread.join()
            self.callback(self.totals())
