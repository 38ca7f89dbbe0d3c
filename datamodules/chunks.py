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
import errno
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
    _optimize(items, out / "data", tokens=sum(len(item) for item in items))
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


STALL_SECONDS = 60.0  # no CPU in any of litdata's processes for this long: stuck, not slow
EXIT_JOIN_SECONDS = 5.0  # how long a litdata process that is exiting waits for its helper processes


class Stopped(Exception):
    """SIGINT or SIGTERM while litdata was writing: its processes were stopped, nothing reads as complete."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


_STOP: list[int] = []  # the signals received inside stop_on_signals


def check_stop() -> None:
    """Raise Stopped if a signal asked for it (inside ``stop_on_signals``): called between steps."""
    if _STOP:
        raise Stopped(_STOP[0])


@contextlib.contextmanager
def stop_on_signals(signals=(signal.SIGINT, signal.SIGTERM)):
    """For the block's time these signals ask the work to stop, which it does at its next check
    (between parts, and at once while litdata runs: its process group is killed). A handler only
    records: an exception raised from a handler can land anywhere, in a finalizer that ignores it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _STOP.clear()
    old = {sig: signal.signal(sig, lambda signum, frame: _STOP.append(signum)) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        _STOP.clear()


def _optimize(items: list, output_dir: Path, fn=_emit, workers: int = 1, tokens=None) -> None:
    """litdata.optimize of fn over items (one worker unless told), run in a child process that leads a
    process group of its own, supervised from here:
    - every process litdata starts is in that group, and the group is killed on every way out
      (success, error, signal): no orphan is left, even when litdata leaves one (a helper process of
      a worker that failed waits on a queue for good, and the worker at exit waits for it);
    - SIGINT/SIGTERM here stop the group and raise ``Stopped`` (litdata's own SIGINT handler, which
      exits 0, stays in the child);
    - a group that uses no CPU for STALL_SECONDS is stuck (a full disk where litdata waits on a
      queue): stopped, and the cause told (disk full when it is);
    - what it wrote is checked: every chunk as long as its index says, and ``tokens`` tokens in all
      when given (a number, or a function that counts them once the work is done): litdata can lose
      a worker's error after its last item (a full disk in the final flush) and return as if it
      succeeded.
    It also keeps litdata's process-wide side effects out of this process: 'fork' instead of 'spawn'
    (~7 s of imports per call on 2 cores), and private cache folders (it empties /tmp/chunks and
    /tmp/data, racing any concurrent optimize).
    """
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(dir=output_dir.parent, prefix=".optimize-")
    try:
        _supervise(lambda: _run_optimize(items, output_dir, fn, workers, scratch), output_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _check_written(output_dir, tokens)


def _run_optimize(items: list, output_dir: Path, fn, workers: int, scratch: str) -> None:
    from litdata import TokensLoader, optimize

    fork = "fork" in mp.get_all_start_methods()
    with _env(DATA_OPTIMIZER_CACHE_FOLDER=f"{scratch}/chunks", DATA_OPTIMIZER_DATA_CACHE_FOLDER=f"{scratch}/data",
              # tokenizers warns in a forked child after using its thread pool unless this is set
              TOKENIZERS_PARALLELISM=os.environ.get("TOKENIZERS_PARALLELISM", "false")):
        optimize(fn=fn, inputs=items, output_dir=str(output_dir), chunk_bytes=CHUNK_BYTES,
                 item_loader=TokensLoader(), num_workers=workers, reorder_files=False, keep_data_ordered=True,
                 start_method="fork" if fork else None, verbose=False)


def _bound_exit_joins() -> None:
    """In the runner only (its children inherit it): a process that exits waits for its own helper
    processes EXIT_JOIN_SECONDS at most, then kills them. A litdata worker that failed never tells
    its helpers to stop, and would wait for them for good at exit."""
    import multiprocessing.util as util

    original = util._exit_function

    def bounded(*args, **kwargs):
        for child in mp.active_children():
            if not child.daemon:
                child.join(EXIT_JOIN_SECONDS)
                if child.is_alive():
                    child.kill()
        return original(*args, **kwargs)

    util._exit_function = bounded


def _supervise(target, output_dir: Path) -> None:
    """Run ``target`` in a forked child leading its own process group (see ``_optimize``)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the runner
        code = 1
        try:
            os.close(read)
            os.setpgid(0, 0)
            for sig in (signal.SIGINT, signal.SIGTERM):  # the supervisor decides; a kill reaches the group
                signal.signal(sig, signal.SIG_DFL)
            _bound_exit_joins()
            target()
            code = 0
        except BaseException as e:  # noqa: BLE001 - told to the supervisor, which raises it
            with contextlib.suppress(Exception):
                os.write(write, _error_text(e).encode("utf-8", "replace")[:4096])
        finally:
            os._exit(code)
    os.close(write)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # also here: the group exists before anything below may kill it
    # where nobody handles SIGTERM, its default would kill this process and orphan the group
    unhandled = threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    status = None
    try:
        with stop_on_signals((signal.SIGTERM,)) if unhandled else contextlib.nullcontext():
            status = _wait(pid, output_dir)
    finally:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)  # whatever of the group is left: no orphan
        if status is None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        with os.fdopen(read, "rb") as f:
            message = f.read().decode("utf-8", "replace")
    if status != 0:
        raise _runner_error(message, output_dir)


def _wait(pid: int, output_dir: Path) -> int:
    """The runner's exit code; raises when its group is stuck."""
    import time

    cpu, since = None, time.monotonic()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        check_stop()
        now = _group_cpu(pid)
        if now is None or now != cpu:
            cpu, since = now, time.monotonic()
        elif time.monotonic() - since > STALL_SECONDS:
            if _disk_full(output_dir):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(output_dir))
            raise RuntimeError(f"litdata stopped working (no CPU for {STALL_SECONDS:.0f} s) while writing "
                               f"{output_dir}; its processes were stopped")
        time.sleep(0.25)


def _group_cpu(pgid: int) -> int | None:
    """CPU ticks used so far by the processes of group ``pgid`` (None without /proc)."""
    total, seen = 0, False
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # field 5: the process group
            total += int(fields[11]) + int(fields[12])  # fields 14, 15: user and system ticks
            seen = True
    return total if seen else None


def _disk_full(path: Path) -> bool:
    """Less than 1 MiB (or 1%) left where ``path`` is written."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < max(1 << 20, 0.01 * st.f_blocks * st.f_frsize)


def _error_text(e: BaseException) -> str:
    """The exception for the pipe (at most 4 KiB, which a pipe takes without blocking): pickled when
    small, and its text's end (a litdata error ends with the worker's own)."""
    import base64
    import pickle

    try:
        blob = base64.b64encode(pickle.dumps(e)).decode()
    except Exception:  # noqa: BLE001 - not every exception pickles; its text travels anyway
        blob = ""
    return f"{blob if len(blob) < 2048 else ''}\n{f'{type(e).__name__}: {e}'[-1500:]}"


def _runner_error(message: str, output_dir: Path) -> BaseException:
    """The runner's exception as it was raised there: our own errors unpickled (a CorpusError stays
    one); litdata's worker tracebacks read for their last error; a full disk as ENOSPC."""
    import base64
    import pickle

    blob, _, text = message.partition("\n")
    if "No space left on device" in text or "[Errno 28]" in text or _disk_full(output_dir):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(output_dir))
    if "Disk quota exceeded" in text or "[Errno 122]" in text:
        return OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(output_dir))
    error = None
    with contextlib.suppress(Exception):
        error = pickle.loads(base64.b64decode(blob)) if blob else None  # noqa: S301 - our own child wrote it
    if isinstance(error, Exception) and not (isinstance(error, RuntimeError) and "Traceback" in str(error)):
        return error
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(" ")]
    last = next((ln for ln in reversed(lines) if ":" in ln and ln.split(":")[0].endswith(("Error", "Exception"))),
                lines[-1] if lines else "the runner died")
    kind, _, detail = last.partition(": ")
    from .corpus import CorpusError

    if kind.endswith("CorpusError"):
        return CorpusError(detail.rstrip(".").strip())
    return RuntimeError(f"litdata failed writing {output_dir}: {last[:300]}")


def _check_written(output_dir: Path, tokens) -> None:
    """What litdata wrote is whole: an index, every chunk as long as the index says, ``tokens`` in all."""
    index = Path(output_dir) / "index.json"
    try:
        chunks = json.loads(index.read_text())["chunks"]
    except (OSError, ValueError, KeyError, TypeError):
        raise _incomplete(output_dir, "no readable index.json") from None
    for c in chunks:
        try:
            size = (Path(output_dir) / c["filename"]).stat().st_size
        except (OSError, KeyError, TypeError):
            raise _incomplete(output_dir, f"chunk {c.get('filename')} is missing") from None
        if size != c.get("chunk_bytes"):
            raise _incomplete(output_dir, f"chunk {c['filename']} holds {size} bytes, its index says "
                                          f"{c.get('chunk_bytes')}")
    written = sum(int(c.get("dim") or 0) for c in chunks)
    if callable(tokens):
        try:
            tokens = tokens()
        except (OSError, ValueError, KeyError) as e:  # what the workers should have written beside the chunks
            raise _incomplete(output_dir, f"{type(e).__name__}: {e}") from None
    if tokens is not None and written != tokens:
        raise _incomplete(output_dir, f"{written:,} tokens written of {tokens:,}")


def _incomplete(output_dir: Path, why: str) -> Exception:
    if _disk_full(output_dir):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(output_dir))
    return RuntimeError(f"litdata wrote {output_dir} incompletely ({why})")


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
