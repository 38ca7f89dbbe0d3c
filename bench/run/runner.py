"""Run a matrix: for each cell not already done, build data and model, train, validate, record."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import signal
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from models import count_params

from ..errors import ConfigError
from ..launch.claims import STALE_AFTER, acquire, holder, wait_for
from ..faults import pause_point
from . import compiling
from .callbacks import CellMetrics, Diverged, LiveProgress
from .checkpoints import LATEST, AtomicCheckpointIO, PeriodicCheckpoint, find_resume
from .environment import (ENV_ERRNOS, DataCache, build_loggers, check_out, env_error, environment_record,
                          make_trainer, preflight, root_device)
from .matrix import Cell
from .module import LMModule
from .moe_probes import MoEProbes
from .outliers import OutlierProbe
from .precision import describe as describe_precision
from .probes import Probes, registered_probes
from .signals import Interrupted, RelayEarlySignal, StopRequest
from ..launch.ranks import RankDecisions, is_rank_zero
from ..plugins import provenance
from ..results.records import DONE, Record, cell_dir, merge_curves, read_record, write_json

# Lightning's info lines (devices, tips) and known-harmless warnings would bury the progress display.
for _name in ("lightning.pytorch", "lightning.fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)
for _msg in (".*LeafSpec.*", ".*does not have many workers.*", ".*smaller than the logging interval.*",
             ".*has `__len__` defined.*", ".*exists and is not empty.*",
             ".*command is available on your system but is not used.*"):
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
    wait: bool = False  # wait for cells another run is training instead of skipping them
    stale_after: float = STALE_AFTER  # seconds without a heartbeat before a claim is taken over
    save_weights: bool = False  # keep every finished cell's weights (safetensors) under <cell>/weights


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def train_cell(cell: Cell, matrix_name: str, dm, opts: RunOptions, progress=None, warn=None,
               stop: StopRequest | None = None) -> Record:
    """Train one cell and return its record (status ok/diverged/oom/failed/interrupted); a training
    failure is recorded and the matrix goes on. Every phase can be redone from any checkpoint: the
    checkpoint taken at the last step carries the fit loop, the measured throughput and the final
    train loss, so a cell killed during final validation, probes or the record write resumes there.
    Raises ConfigError for what the user must fix (no GPU, full disk...), after recording the cell."""
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    cfg = cell.config
    folder = cell_dir(opts.out, matrix_name, cell.id)
    ckpt_dir = folder / "checkpoints"
    writer = is_rank_zero()  # other DDP/FSDP ranks train too, but write nothing (issue 14 item 10)
    if opts.force and writer:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    resume = find_resume(ckpt_dir, warn)
    cfg.model.vocab_size = dm.vocab_size
    counts = count_params(cfg.model)
    record = {
        "id": cell.id, "matrix": matrix_name, "status": "running", "config_hash": cfg.config_hash(),
        "axes": dict(cell.axes), "activation": cfg.model.activation, "norm": cfg.norm, "scale": cfg.scale,
        "seed": cfg.seed, "config": cfg.to_dict(),
        "params": {"total": counts.total, "non_embedding": counts.non_embedding, "ffn": counts.ffn,
                   "intermediate_size": counts.intermediate_size, "deviation": counts.deviation,
                   "active": counts.active, "expert_ffn": counts.expert_ffn},
        "data": {"corpus_fingerprint": dm.corpus_fingerprint, "tokenizer_fingerprint": dm.tokenizer_fingerprint,
                 "vocab_size": dm.vocab_size, "unigram_ppl": dm.unigram_ppl(),
                 "eval": list(getattr(dm, "val_names", ["val", "ood"]))},
        "command": sys.argv, "started": now(), "plugins": provenance(cfg),
    }
    t = cfg.train
    tokens_per_batch = t.batch_size * cfg.model.block_size
    metrics_cb = CellMetrics(tokens_per_batch, t.batch_size, t.throughput_warmup * t.grad_accum,
                             t.nan_check_every * t.grad_accum)
    callbacks = [metrics_cb, PausePoints(), RelayEarlySignal(stop)]
    saver = PeriodicCheckpoint(ckpt_dir / LATEST, opts.ckpt_every, t.val_every)
    task = None
    if progress is not None:
        task = progress.add_task(f"  {cell.id}", total=t.max_steps, loss="-", tps="-")
        callbacks.append(LiveProgress(progress, task, tokens_per_batch * t.grad_accum))
    wall = time.perf_counter()
    probes, outliers, trainer, user_error, extra_probes, moe_probes = None, None, None, None, {}, None
    try:
        if writer and resume is not None and (folder / "metrics.csv").exists():  # CSVLogger would start anew
            n = len(list(folder.glob("metrics.part-*.csv"))) + 1
            (folder / "metrics.csv").rename(folder / f"metrics.part-{n:03d}.csv")
        if writer:
            write_json(folder / "record.json", record)  # status 'running': never read as complete
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        module = LMModule(cfg, getattr(dm, "val_names", None))
        probes = Probes.from_config(cfg, dm)  # None when train.probe_every == 0
        if probes is not None:
            callbacks.append(probes)
        outliers = OutlierProbe.from_probes(probes)  # same steps and batch as the probes
        callbacks += [outliers] if outliers is not None else []
        if t.precision.startswith("fp8"):  # torchao, imported only for fp8 cells
            from .fp8 import precision_callbacks
            callbacks += precision_callbacks(cfg)
        moe_probes = MoEProbes.from_config(cfg)  # None for a dense model
        if moe_probes is not None:
            callbacks.append(moe_probes)
        extra_probes = registered_probes(cfg, dm)  # plugins' probes (bench.run.probes.register_probe)
        callbacks += extra_probes.values()
        if opts.ckpt_every > 0:  # model, optimizer, schedule, the data loader's position, callbacks' state
            callbacks.append(saver)  # last: the state it saves includes every other callback's step
        fit_module = compiling.for_fit(module, cfg)  # a clean dynamo cache; regional or whole, before fit
        trainer = make_trainer(
            cfg, max_steps=t.max_steps, accumulate_grad_batches=t.grad_accum,
            val_check_interval=t.val_every * t.grad_accum, check_val_every_n_epoch=None,
            num_sanity_val_steps=0, log_every_n_steps=t.log_every, deterministic=t.deterministic,
            logger=build_loggers(opts.loggers, folder), callbacks=callbacks, enable_progress_bar=False,
            enable_model_summary=False, enable_checkpointing=False, default_root_dir=folder,
            plugins=[AtomicCheckpointIO()])
        if resume is not None:
            record["resumed_from"] = str(resume)
        # phase 1, train: a checkpoint at max_steps makes fit() a no-op (no train hooks run)
        trainer.fit(fit_module, datamodule=dm, ckpt_path=resume)
        if resume is not None:
            record["resumed_from_step"] = metrics_cb.start_step if metrics_cb.start_step is not None \
                else trainer.global_step
        pause_point("final-checkpoint")
        # phase 2, final validation: final metrics always come from the last step
        if module.validated_at != trainer.global_step:
            trainer.validate(module, datamodule=dm, verbose=False)
        # phase 3, end-of-training probes and the throughput summary (their train-end hooks do not
        # run when the resumed fit had nothing left to train)
        pause_point("probes")
        if probes is not None and not probes.final:
            probes.on_train_end(trainer, module)
        if not metrics_cb.result:
            metrics_cb.on_train_end(trainer, module)
        train_loss = module.last_train_loss
        record["metrics"] = {"train_loss": float(train_loss) if train_loss is not None else None,
                             **module.val_results, **metrics_cb.result,
                             "steps": trainer.global_step,
                             "tokens": trainer.global_step * tokens_per_batch * t.grad_accum * trainer.world_size}
        record["status"] = "ok"
        if opts.save_weights:
            from ..results.weights import save_cell
            record["weights"] = save_cell(folder, module.model, cfg, dm.tokenizer)
    except SIGTERMException:
        record.update(status="interrupted", error="interrupted by a signal", interrupted_step=trainer.global_step,
                      checkpoint_step=saver.interrupt_step)
    except Diverged as e:
        record.update(status="diverged", error=str(e), diverged_step=e.step,
                      metrics={**metrics_cb.result, "steps": e.step})
    except torch.OutOfMemoryError as e:
        record.update(status="oom", error=str(e), traceback=traceback.format_exc())
    except ConfigError as e:
        user_error = e
        record.update(status="failed", error=str(e))
    except OSError as e:
        if e.errno not in ENV_ERRNOS:
            raise
        user_error = env_error(e, f"{cell.id}: cannot write under {folder}")
        record.update(status="failed", error=str(user_error), traceback=traceback.format_exc())
    except Exception as e:  # noqa: BLE001 - any failure is recorded and the matrix goes on
        record.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    if probes is not None:  # also after a divergence: the history up to it
        record["probes"] = probes.result()
    if outliers is not None:
        record["outliers"] = outliers.result()
    if extra_probes:
        record["extra_probes"] = {name: cb.result() for name, cb in extra_probes.items()}
    if moe_probes is not None:
        record["moe"] = moe_probes.result()
    record["wall_seconds"] = time.perf_counter() - wall
    record["ended"] = now()
    device = trainer.strategy.root_device if trainer is not None else root_device(cfg)
    record["environment"] = environment_record(device)
    record["precision"] = trainer.precision if trainer is not None else t.precision  # as run (16-mixed on CPU is bf16-mixed)
    record.update(describe_precision(t.precision, as_run=record["precision"]))  # fp8: its name and recipe
    record["device"] = str(device)
    if not writer:  # rank 0 writes and reports this cell; this rank's record is never used
        if progress is not None and task is not None:
            progress.remove_task(task)
        return Record(id=cell.id, status=record["status"], scale=cfg.scale, activation=cfg.model.activation,
                      norm=cfg.norm, seed=cfg.seed)
    try:  # never let the bookkeeping hide the cell's own error
        if resume is not None:
            merge_curves(folder)
        pause_point("record")
        write_json(folder / "record.json", record)
    except (OSError, ValueError) as e:
        warn(f"could not write the record of {cell.id}: {type(e).__name__}: {e}")
        if user_error is None:
            user_error = env_error(e, f"{cell.id}: cannot write its record") if isinstance(e, OSError) and \
                e.errno in ENV_ERRNOS else ConfigError(f"{cell.id}: cannot write its record: {e}")
    if record["status"] in DONE and not opts.keep_checkpoints and user_error is None:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    if progress is not None and task is not None:
        progress.remove_task(task)
    if user_error is not None:
        raise user_error
    return Record.from_dict(record, folder / "record.json")


class PausePoints(L.Callback):
    """The kill tests' fault-injection points inside the loops (see bench/faults.py)."""

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 4:
            pause_point("train")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        pause_point("validation")


def run_matrix(matrix_name: str, cells: list[Cell], opts: RunOptions, console: Console | None = None) -> list[Record]:
    """Every cell of the matrix: claim, train, record, release. Finished cells (same id, complete
    record) are not trained again; a cell claimed by another live run is skipped (or waited for
    with ``opts.wait``). SIGTERM/SIGINT stop the current cell at a step boundary, record it as
    `interrupted` and raise ``Interrupted``."""
    console = console or Console()
    warn = lambda msg: console.print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)  # noqa: E731
    check_out(opts.out)
    preflight(cells)
    records, todo = [], []
    for cell in cells:
        rec, why = _done_record(opts, matrix_name, cell)
        if rec is not None:
            records.append(rec)
        else:
            if why:
                console.print(f"{cell.id}: {why}", highlight=False)
            todo.append(cell)
    if not todo:
        console.print(f"[green]all {len(cells)} cells of {matrix_name} are done[/] (use --force to retrain)")
        return records
    console.print(f"{matrix_name}: {len(todo)} cell(s) to train, {len(cells) - len(todo)} already done")
    data, ranks = DataCache(), RankDecisions(opts.out, matrix_name, todo)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
               TextColumn("{task.fields[tps]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with StopRequest() as stop, Progress(*columns, console=console, disable=opts.quiet, transient=False) as progress:
        matrix_task = progress.add_task(f"[bold]{matrix_name}[/] cells", total=len(cells),
                                        completed=len(cells) - len(todo), loss="loss", tps="tok/s")
        for cell in todo:
            if stop.signum:
                break
            folder = cell_dir(opts.out, matrix_name, cell.id)
            if not ranks.rank0:  # another rank of a multi-device cell: rank 0 claims, this one follows
                if ranks.wait(cell.id):
                    records.append(train_cell(cell, matrix_name, data.get(cell.config), opts, None, warn, stop))
                continue
            claim = _claim(folder, cell, opts, progress.console)
            ranks.record(cell.id, claim is not None)
            if claim is None:
                progress.advance(matrix_task)
                continue
            with claim:  # released on every exit path
                rec, _ = _done_record(opts, matrix_name, cell)  # finished by another run meanwhile?
                if rec is not None and not opts.force:
                    ranks.record(cell.id, False)
                if rec is None or opts.force:
                    progress.update(matrix_task, description=f"[bold]{matrix_name}[/] preparing data")
                    dm = data.get(cell.config)
                    progress.update(matrix_task, description=f"[bold]{matrix_name}[/] cells")
                    rec = train_cell(cell, matrix_name, dm, opts, progress, warn, stop)
                    _summary(rec, cell, progress.console)
            records.append(rec)
            progress.advance(matrix_task)
            if rec.status == "interrupted" and not stop.signum:
                stop.signum = signal.SIGTERM  # a signal Lightning saw before ours was installed
        if stop.signum:
            where = next((f"; {r.id} stopped at step {r.extra.get('interrupted_step')}" + (
                f", checkpoint saved at step {r.extra['checkpoint_step']}"
                if r.extra.get("checkpoint_step") is not None else "")
                for r in records if r.status == "interrupted"), "")
            raise Interrupted(stop.signum, f"interrupted by {stop.name}{where}; rerun the same command to resume")
    return records


def _done_record(opts: RunOptions, matrix_name: str, cell: Cell) -> tuple[Record | None, str | None]:
    """(the finished record, None) or (None, why it is trained again: None for a plain new cell)."""
    path = cell_dir(opts.out, matrix_name, cell.id) / "record.json"
    if not path.exists():
        return None, None
    rec, problem = read_record(path)
    if problem is not None:
        if problem.startswith("status 'running'"):
            return None, "its last run did not finish (resuming it)"
        return None, f"its record cannot be used ({problem}); training it again"
    if opts.force or rec.status not in DONE:
        return None, None
    return rec, None


def _claim(folder: Path, cell: Cell, opts: RunOptions, console):
    claim = acquire(folder, stale_after=opts.stale_after,
                    log=lambda msg: console.print(f"[yellow]{msg}[/]", highlight=False, soft_wrap=True))
    if claim is not None:
        return claim
    held = holder(folder)
    who = held.describe() if held else "another run"
    if not opts.wait:
        console.print(f"[yellow]skipped[/] {cell.id}: being trained by {who} (bench run --wait waits for it)",
                      highlight=False)
        return None
    console.print(f"waiting for {cell.id}: being trained by {who}", highlight=False)
    return wait_for(folder, stale_after=opts.stale_after, poll=2.0)


def _summary(rec: Record, cell: Cell, console) -> None:
    status, m = rec.status, rec.metrics
    summary = (f"val ppl {m.get('val_ppl', float('nan')):.2f}, {m.tokens_per_sec or 0:,.0f} tok/s"
               if status == "ok" else rec.error or "")
    console.print(f"{'[green]ok' if status == 'ok' else '[red]' + status}[/] {cell.id}: {summary}")
