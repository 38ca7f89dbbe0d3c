"""Run a matrix: for each cell not already done, build data and model, train, validate, record."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from models import count_params

from .callbacks import CellMetrics, Diverged, LiveProgress
from .matrix import Cell
from .module import LMModule
from .probes import Probes
from ..launch.ranks import is_rank_zero
from ..results.records import DONE, cell_dir, merge_curves, read_record, write_json

# Lightning's info lines (devices, tips) and known-harmless warnings would bury the progress display.
for _name in ("lightning.pytorch", "lightning.fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)
for _msg in (".*LeafSpec.*", ".*does not have many workers.*", ".*smaller than the logging interval.*",
             ".*has `__len__` defined.*", ".*exists and is not empty.*"):
    warnings.filterwarnings("ignore", message=_msg)


@dataclass
class RunOptions:
    """Non-semantic settings: they change where and how results are written, not what is measured."""

    out: Path = Path("results")
    force: bool = False
    loggers: tuple[str, ...] = ("csv",)
    quiet: bool = False
    ckpt_every: int = 100  # optimizer steps between resumable checkpoints (0 = none)
    keep_checkpoints: bool = False


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def build_loggers(names, folder: Path):
    loggers = []
    for name in names:
        if name == "csv":
            loggers.append(CSVLogger(folder, name="", version=""))  # -> folder/metrics.csv
        elif name == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger
            loggers.append(TensorBoardLogger(folder, name="tb", version=""))
        elif name == "wandb":
            from lightning.pytorch.loggers import WandbLogger
            loggers.append(WandbLogger(save_dir=str(folder), name=folder.name))
        else:
            raise ValueError(f"unknown logger {name!r}; valid: csv, tensorboard, wandb")
    return loggers


class DataCache:
    """One datamodule per distinct (data config, seq len, batch, seed, val tokens)."""

    def __init__(self):
        self._dms = {}

    def get(self, cfg):
        from datamodules import TextDataModule

        key = (repr(cfg.data), cfg.model.block_size, cfg.train.batch_size, cfg.seed, cfg.train.val_tokens)
        if key not in self._dms:
            dm = TextDataModule(cfg.data, seq_len=cfg.model.block_size, batch_size=cfg.train.batch_size,
                                seed=cfg.seed, val_tokens=cfg.train.val_tokens)
            dm.prepare_data()
            dm.setup("fit")
            self._dms[key] = dm
        return self._dms[key]


def train_cell(cell: Cell, matrix_name: str, dm, opts: RunOptions, progress=None) -> dict:
    """Train one cell and return its record (status ok/diverged/oom/failed); never raises for a
    training failure, so the matrix goes on."""
    cfg = cell.config
    folder = cell_dir(opts.out, matrix_name, cell.id)
    ckpt_dir = folder / "checkpoints"
    writer = is_rank_zero()  # other DDP/FSDP ranks train too, but write nothing (issue 14 item 10)
    if opts.force and writer:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    resume = ckpt_dir / "latest.ckpt"
    resume = resume if resume.is_file() else None
    cfg.model.vocab_size = dm.vocab_size
    counts = count_params(cfg.model)
    record = {
        "id": cell.id, "matrix": matrix_name, "status": "running", "config_hash": cfg.config_hash(),
        "axes": dict(cell.axes), "activation": cfg.model.activation, "norm": cfg.norm, "scale": cfg.scale,
        "seed": cfg.seed, "config": cfg.to_dict(),
        "params": {"total": counts.total, "non_embedding": counts.non_embedding, "ffn": counts.ffn,
                   "intermediate_size": counts.intermediate_size, "deviation": counts.deviation},
        "data": {"corpus_fingerprint": dm.corpus_fingerprint, "tokenizer_fingerprint": dm.tokenizer_fingerprint,
                 "vocab_size": dm.vocab_size, "unigram_ppl": dm.unigram_ppl()},
        "command": sys.argv, "started": now(),
    }
    if writer and resume is not None and (folder / "metrics.csv").exists():  # CSVLogger would start anew
        n = len(list(folder.glob("metrics.part-*.csv"))) + 1
        (folder / "metrics.csv").rename(folder / f"metrics.part-{n:03d}.csv")
    if writer:
        write_json(folder / "record.json", record)  # status 'running': never read as complete
    t = cfg.train
    tokens_per_batch = t.batch_size * cfg.model.block_size
    metrics_cb = CellMetrics(tokens_per_batch, t.batch_size, t.throughput_warmup * t.grad_accum)
    callbacks = [metrics_cb]
    if opts.ckpt_every > 0:  # model, optimizer, schedule and the data loader's position
        callbacks.append(ModelCheckpoint(ckpt_dir, filename="latest", every_n_train_steps=opts.ckpt_every,
                                         save_top_k=1, enable_version_counter=False))
    task = None
    if progress is not None:
        task = progress.add_task(f"  {cell.id}", total=t.max_steps, loss="-", tps="-")
        callbacks.append(LiveProgress(progress, task, tokens_per_batch * t.grad_accum))
    wall = time.perf_counter()
    probes = None
    try:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        module = LMModule(cfg)
        probes = Probes.from_config(cfg, dm)  # None when train.probe_every == 0
        if probes is not None:
            callbacks.append(probes)
        if t.compile:
            module.model.compile()
        trainer = L.Trainer(
            accelerator=t.accelerator, devices=_devices(t.devices), strategy=t.strategy, num_nodes=t.num_nodes,
            precision=t.precision, max_steps=t.max_steps, accumulate_grad_batches=t.grad_accum,
            val_check_interval=t.val_every * t.grad_accum, check_val_every_n_epoch=None,
            num_sanity_val_steps=0, log_every_n_steps=t.log_every, deterministic=t.deterministic,
            logger=build_loggers(opts.loggers, folder), callbacks=callbacks, enable_progress_bar=False,
            enable_model_summary=False, enable_checkpointing=opts.ckpt_every > 0, default_root_dir=folder,
        )
        if resume is not None:
            record["resumed_from"] = str(resume)
        trainer.fit(module, datamodule=dm, ckpt_path=resume)
        if resume is not None:
            record["resumed_from_step"] = metrics_cb.start_step
        if module.validated_at != trainer.global_step:  # final metrics always come from the last step
            trainer.validate(module, datamodule=dm, verbose=False)
        train_loss = module.last_train_loss
        record["metrics"] = {"train_loss": float(train_loss) if train_loss is not None else None,
                             **module.val_results, **metrics_cb.result,
                             "steps": trainer.global_step,
                             "tokens": trainer.global_step * tokens_per_batch * t.grad_accum * trainer.world_size}
        record["status"] = "ok"
    except Diverged as e:
        record.update(status="diverged", error=str(e), diverged_step=e.step,
                      metrics={**metrics_cb.result, "steps": e.step})
    except torch.OutOfMemoryError as e:
        record.update(status="oom", error=str(e), traceback=traceback.format_exc())
    except Exception as e:  # noqa: BLE001 - any failure is recorded and the matrix goes on
        record.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    if probes is not None:  # also after a divergence: the history up to it
        record["probes"] = probes.result()
    record["wall_seconds"] = time.perf_counter() - wall
    record["ended"] = now()
    from .system import environment
    record["environment"] = environment(_root_device(cfg))
    record["precision"] = t.precision
    if not writer:
        return record
    if resume is not None:
        merge_curves(folder)
    write_json(folder / "record.json", record)
    if record["status"] in DONE and not opts.keep_checkpoints:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    if progress is not None and task is not None:
        progress.remove_task(task)
    return record


def _devices(devices: str):
    return int(devices) if str(devices).isdigit() else devices


def _root_device(cfg) -> torch.device:
    acc = cfg.train.accelerator
    return torch.device("cuda") if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()) \
        else torch.device("cpu")


def run_matrix(matrix_name: str, cells: list[Cell], opts: RunOptions, console: Console | None = None) -> list[dict]:
    """Every cell of the matrix; finished cells (same id, complete record) are not trained again."""
    console = console or Console()
    records, todo = [], []
    for cell in cells:
        rec = read_record(cell_dir(opts.out, matrix_name, cell.id) / "record.json")
        if rec is not None and not opts.force and rec["status"] in DONE:
            records.append(rec)
        else:
            todo.append(cell)
    if not todo:
        console.print(f"[green]all {len(cells)} cells of {matrix_name} are done[/] (use --force to retrain)")
        return records
    console.print(f"{matrix_name}: {len(todo)} cell(s) to train, {len(cells) - len(todo)} already done")
    data = DataCache()
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
               TextColumn("{task.fields[tps]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=opts.quiet, transient=False) as progress:
        matrix_task = progress.add_task(f"[bold]{matrix_name}[/] cells", total=len(cells),
                                        completed=len(cells) - len(todo), loss="loss", tps="tok/s")
        for cell in todo:
            progress.update(matrix_task, description=f"[bold]{matrix_name}[/] preparing data")
            dm = data.get(cell.config)
            progress.update(matrix_task, description=f"[bold]{matrix_name}[/] cells")
            rec = train_cell(cell, matrix_name, dm, opts, progress)
            records.append(rec)
            status = rec["status"]
            m = rec.get("metrics") or {}
            summary = (f"val ppl {m.get('val_ppl', float('nan')):.2f}, {m.get('tokens_per_sec') or 0:,.0f} tok/s"
                       if status == "ok" else rec.get("error", ""))
            progress.console.print(f"{'[green]ok' if status == 'ok' else '[red]' + status}[/] {cell.id}: {summary}")
            progress.advance(matrix_task)
    return records
