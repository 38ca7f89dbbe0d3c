"""`bench data prepare` (tokenize a corpus into a streamable dataset) and `bench data speed` (loader
tokens/s against what a GPU cell consumed). The work is in datamodules/; this is the glue."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from ..console import out as console
from ..errors import ConfigError, Interrupted

HELP = "prepare large corpora into streamable datasets; loader speed"
GPU_RECORDS = Path(__file__).resolve().parents[2] / "results" / "gpu" / "gpu-71m"


def cmd_prepare(args) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from datamodules import CorpusError, TokenizerError
    from datamodules.chunks import Stopped, stop_on_signals
    from datamodules.prepare import prepare

    if args.truncate is not None and args.packing:
        raise ConfigError("--packing and --truncate exclude each other (packing is the default)")
    start = time.perf_counter()
    columns = [TextColumn("[bold]prepare[/]"), BarColumn(), TextColumn("{task.percentage:>5.1f}% of input bytes"),
               TextColumn("{task.fields[docs]} docs, {task.fields[tokens]} tokens, {task.fields[rate]} tok/s"),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, disable=args.quiet) as progress:
        total = sum(p.stat().st_size for p in _sizes(args.source))
        task = progress.add_task("", total=max(1, total), docs="0", tokens="0", rate="-")

        def update(t: dict) -> None:
            done = t["bytes"]
            rate = t["tokens"] / max(1e-9, time.perf_counter() - start)
            progress.update(task, completed=min(done, total), docs=f"{t['documents'] + t['val_documents']:,}",
                            tokens=f"{t['tokens'] + t['val_tokens']:,}", rate=f"{rate:,.0f}")
        try:
            with stop_on_signals():  # a signal stops the run between parts, or litdata's processes at once
                meta = prepare(args.source, args.tokenizer, args.out, workers=args.workers, truncate=args.truncate,
                               val_fraction=args.val_fraction, files_per_part=args.files_per_part,
                               on_progress=update, say=lambda m: progress.console.print(m, highlight=False))
        except (CorpusError, TokenizerError) as e:
            raise ConfigError(str(e)) from None
        except Stopped as e:  # the dataset has no meta.json: it never reads as complete
            raise Interrupted(e.signum, f"bench data prepare interrupted by {signal.Signals(e.signum).name}: "
                                        f"{args.out} is unfinished (no meta.json); rerun the same command to "
                                        "resume") from None
        except OSError as e:
            from ..run.engine.environment import ENV_ERRNOS

            if e.errno not in ENV_ERRNOS:
                raise
            raise ConfigError(f"bench data prepare: cannot write {args.out}: {ENV_ERRNOS[e.errno]}; free space (or "
                              "fix it) and rerun the same command to resume: finished parts are kept") from None
        progress.update(task, completed=total)
    s = meta["splits"]
    console.print(f"wrote {args.out}: train {s['train']['tokens']:,} tokens ({s['train']['documents']:,} documents), "
                  f"val {s['val']['tokens']:,} tokens ({s['val']['documents']:,} documents), tokenizer "
                  f"{meta['tokenizer']['name']} (sha256 {meta['tokenizer']['fingerprint'][:12]})")
    if args.json:
        print(json.dumps(meta))
    return 0


def _sizes(source: str) -> list[Path]:
    from datamodules.prepare import list_sources

    try:
        return [p for _, p in list_sources(source)]
    except ValueError as e:
        raise ConfigError(str(e)) from None


def gpu_tokens_per_sec(folder: Path = GPU_RECORDS) -> tuple[float, str] | None:
    """(tokens/s, what) of the gpas-71m cell from its committed GPU records: the fastest ok cell."""
    best = None
    for path in sorted(folder.glob("*/record.json")):
        r = json.loads(path.read_text())
        tps = (r.get("metrics") or {}).get("tokens_per_sec")
        if r.get("status") == "ok" and tps and (best is None or tps > best[0]):
            device = (r.get("environment") or {}).get("device", "?")
            best = (float(tps), f"{r['id']} on {device}")
    return best


def cmd_speed(args) -> int:
    from rich.table import Table

    from ..run.config.schema import DataConfig
    from datamodules import CorpusError, PreparedCorpus, is_prepared
    from datamodules.datamodule import TextDataModule
    from datamodules.speed import loader_speed

    if not is_prepared(args.dataset):
        raise ConfigError(f"{args.dataset} is not a dataset written by `bench data prepare` (no meta.json)")
    try:
        packing = PreparedCorpus.open(args.dataset, {}, args.cache_dir).packing
        cfg = DataConfig(corpus=args.dataset, tokenizer="dataset", ood_corpus=None, cache_dir=args.cache_dir,
                         packing=packing)
        dm = TextDataModule(cfg, seq_len=args.seq_len, batch_size=args.batch_size, val_tokens=args.seq_len)
    except (CorpusError, ValueError) as e:
        raise ConfigError(str(e)) from None
    ref = gpu_tokens_per_sec(Path(args.gpu_records))
    t = Table(title=f"training loader from {args.dataset} (seq {args.seq_len}, batch {args.batch_size}; "
                    f"{args.batches} batches after {args.warmup} untimed)", title_justify="left")
    for col in ("workers", "tokens/s", "x GPU need" if ref else ""):
        t.add_column(col, justify="right")
    rows = []
    for w in sorted({0, args.workers}):
        r = loader_speed(dm, w, args.batches, args.warmup)
        rows.append({"workers": w, "tokens_per_sec": r.tokens_per_sec,
                     "ratio_to_gpu": r.tokens_per_sec / ref[0] if ref else None})
        t.add_row(str(w), f"{r.tokens_per_sec:,.0f}", f"{r.tokens_per_sec / ref[0]:.2f}" if ref else "")
    console.print(t)
    if ref:
        console.print(f"GPU need: {ref[0]:,.0f} tokens/s consumed by {ref[1]} (from {args.gpu_records}); a ratio "
                      "above 1 means the loader outpaces that cell.", highlight=False)
    else:
        console.print(f"no ok GPU record under {args.gpu_records}: no reference", highlight=False)
    if args.json:
        print(json.dumps({"loader": rows, "gpu_tokens_per_sec": ref[0] if ref else None,
                          "gpu_reference": ref[1] if ref else None}))
    return 0


def add_parser(sub):
    p = sub.add_parser("data", help=HELP)
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND", parser_class=type(p))

    q = dsub.add_parser("prepare", help="tokenize .txt/.jsonl/.json(.gz/.xz/.zst)/.parquet files or folders into a "
                        "litdata dataset (local folder; upload it as is to stream from S3)")
    q.add_argument("source", help="comma-separated input files or folders (searched recursively)")
    q.add_argument("--tokenizer", default="bytes", help="'bytes', or a tokenizer.json / tiktoken file (copied into "
                   "the dataset with its sha256 fingerprint)")
    q.add_argument("--out", required=True, help="output folder; rerun the same command to resume a killed run")
    q.add_argument("--workers", type=int, default=1, help="tokenizing processes (litdata.optimize workers)")
    q.add_argument("--packing", action="store_true", help="pack documents into one stream (the default)")
    q.add_argument("--truncate", type=int, default=None, metavar="SEQ",
                   help="GPAS's truncate-or-pad rows of SEQ + 1 tokens per document instead of packing; cells "
                        "must then have block_size SEQ and data.packing false")
    q.add_argument("--val-fraction", type=float, default=0.005,
                   help="fraction of documents held out as the validation split (a fixed hash of file and "
                        "document number)")
    q.add_argument("--files-per-part", type=int, default=None,
                   help="input files per resumable part [default: --workers]")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.add_argument("--json", action="store_true", help="also print the written meta.json")
    q.set_defaults(data_func=cmd_prepare)

    q = dsub.add_parser("speed", help="benchmark: tokens/s of the training loader from a prepared dataset with 0 "
                        "and N workers, against the tokens/s the gpas-71m cell consumed on its GPU")
    q.add_argument("dataset", help="a folder or URI written by `bench data prepare`")
    q.add_argument("--workers", type=int, default=4, help="the N of the second measurement")
    q.add_argument("--seq-len", type=int, default=1024, help="sequence length (gpas-71m: 1024)")
    q.add_argument("--batch-size", type=int, default=32, help="sequences per batch")
    q.add_argument("--batches", type=int, default=200, help="timed batches per measurement")
    q.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    q.add_argument("--cache-dir", default=".cache", help="cache for a remote dataset's chunks")
    q.add_argument("--gpu-records", default=str(GPU_RECORDS), help="folder of the GPU cell records to compare with")
    q.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    q.set_defaults(data_func=cmd_speed)
    return p


def main(args) -> int:
    return args.data_func(args)
