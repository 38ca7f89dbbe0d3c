"""Train one cell (train_cell: callbacks, fit phases, outcome, record) and run a matrix of them
(run_matrix: the claim-train-record-release lifecycle of bench/run/engine/cell.py over every cell)."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from models import count_params

from ...console import logs_progress
from ...errors import ConfigError
from ...faults import pause_point
from ...plugins import provenance
from ...results.records import DONE, Metrics, Params, Record, cell_dir, now, write_json
from . import compiling
from .callbacks import CellMetrics, Diverged, HeldOut
from .checkpoints import LATEST, AtomicCheckpointIO, PeriodicCheckpoint, checkpoint_step, find_resume
from .claims import ClaimLost
from .curve_log import start_curve
from .environment import ENV_ERRNOS, build_loggers, check_vocab, env_error, environment_record, make_trainer
from ..config.device import root_device
from ..config.matrix import Cell
from ..config.options import RunOptions
from .module import LMModule
from ..config.precision import describe as describe_precision
from ..config.probes import record_field
from .probes.registry import build_probes
from .progress import CellProgress
from .ranks import is_rank_zero
from .signals import RelayEarlySignal, StopRequest

# Lightning's info lines (devices, tips) and known-harmless warnings would bury the progress display.
for _name in ("lightning.pytorch", "lightning.fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)
for _msg in (".*LeafSpec.*", ".*does not have many workers.*", ".*smaller than the logging interval.*",
             ".*has `__len__` defined.*", ".*exists and is not empty.*",
             ".*command is available on your system but is not used.*"):
    warnings.filterwarnings("ignore", message=_msg)


class ClaimGuard(L.Callback):
    """Stops training at the step after the heartbeat found the claim taken over (an attribute read a
    step). Writes do not wait for it: each checkpoint, curve row and record re-reads the claim first."""

    def __init__(self, claim):
        self.claim = claim

    def on_train_batch_end(self, trainer, *args):
        if self.claim is not None and self.claim.lost:
            raise ClaimLost(f"its claim was taken over at step {trainer.global_step}; left to the new holder")


def ensure_held(claim, what: str) -> None:
    """Before a write into the cell: ClaimLost when another run holds the cell now (no claim: tests)."""
    if claim is not None:
        claim.ensure(what)


class PausePoints(L.Callback):
    """The kill tests' fault-injection points inside the loops (see bench/faults.py)."""

    def on_train_batch_end(self, trainer, *args):
        pause_point("train-batch", trainer.global_step)
        if trainer.global_step == 4:
            pause_point("train")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:  # the init pass is no validation point
            pause_point("validation", trainer.global_step)


def sharing(opts_workers: int | None = None) -> dict:
    """How much of the machine this cell had: its cost numbers are a lower bound when shared."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cores = os.cpu_count() or 1
    workers = opts_workers or int(os.environ.get("BENCH_WORKERS") or 1)
    on_cpu = not torch.cuda.is_available()
    return {"load_avg_1m": load, "cpu_count": cores, "threads": torch.get_num_threads(), "workers": workers,
            "shared": bool((workers > 1 and on_cpu) or (load is not None and load > cores))}


def new_record(cell: Cell, matrix_name: str, dm, opts: RunOptions) -> Record:
    """The cell's record as it starts: status 'running', identity, sizes, data and provenance."""
    cfg = cell.config
    c = count_params(cfg.model)
    return Record(
        id=cell.id, matrix=matrix_name, status="running", config_hash=cfg.config_hash(), axes=dict(cell.axes),
        activation=cfg.model.activation, norm=cfg.norm, scale=cfg.scale, seed=cfg.seed, config=cfg.to_dict(),
        params=Params(total=c.total, non_embedding=c.non_embedding, ffn=c.ffn, intermediate_size=c.intermediate_size,
                      deviation=c.deviation, active=c.active, expert_ffn=c.expert_ffn),
        data={"corpus_fingerprint": dm.corpus_fingerprint, "tokenizer_fingerprint": dm.tokenizer_fingerprint,
              "vocab_size": dm.vocab_size, "unigram_ppl": dm.unigram_ppl(),
              "eval": list(getattr(dm, "val_names", ["val", "ood"]))},
        command=list(opts.command or sys.argv), started=now(), plugins=provenance(cfg),
        axis_order=dict(opts.axis_order), sharing=sharing())


@dataclass
class Parts:
    """What one cell's fit is made of, built by ``build_parts``."""

    module: LMModule
    metrics: CellMetrics
    saver: PeriodicCheckpoint
    callbacks: list
    probes: dict[str, L.Callback] = field(default_factory=dict)  # every registered probe of the cell, by name
    trainer: L.Trainer | None = None
    progress: CellProgress | None = None
    claim: object | None = None  # the cell's Claim (None: trained without one, as tests do)


def build_parts(cell: Cell, dm, opts: RunOptions, ckpt_dir: Path, progress, task, stop, claim) -> Parts:
    """Module and callbacks; the order matters: CellMetrics first (it stops the clock for what
    follows), the probes between two HeldOut marks (held out of the clock), the saver last (the
    state it saves includes every other callback's step)."""
    cfg, t = cell.config, cell.config.train
    tokens_per_batch = t.batch_size * cfg.model.block_size
    metrics = CellMetrics(tokens_per_batch, t.batch_size, t.throughput_warmup * t.grad_accum,
                          t.nan_check_every * t.grad_accum)
    saver = PeriodicCheckpoint(ckpt_dir / LATEST, opts.ckpt_every, t.val_every, clock=metrics)
    callbacks = [metrics, PausePoints(), RelayEarlySignal(stop), ClaimGuard(claim)]
    log_every = opts.progress_every if is_rank_zero() and logs_progress(opts.progress_every) else None
    shown = None
    if progress is not None or log_every is not None:  # the display's task and/or lines in the log
        shown = CellProgress(cell.id, tokens_per_batch * t.grad_accum, progress, task, log_every=log_every)
        callbacks.append(shown)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    parts = Parts(LMModule(cfg, getattr(dm, "val_names", None)), metrics, saver, callbacks, progress=shown,
                  claim=claim)
    parts.probes = build_probes(cfg, dm)  # the built-in probes and plugins' (none when train.probe_every == 0)
    probing = list(parts.probes.values())
    if probing:
        if shown is not None:
            shown.probing = True
        callbacks += [HeldOut(metrics, t.probe_every, True, shown), *probing,
                      HeldOut(metrics, t.probe_every, False, shown)]
    if t.precision.startswith("fp8"):  # torchao, imported only for fp8 cells
        from .fp8 import precision_callbacks
        callbacks += precision_callbacks(cfg)
    if opts.ckpt_every > 0:  # model, optimizer, schedule, the data loader's position, callbacks' state
        callbacks.append(saver)
    return parts


def fit_phases(cell: Cell, dm, opts: RunOptions, folder: Path, parts: Parts, resume: Path | None,
               record: Record) -> None:
    """Train, validate at the last step, end-of-training probes, metrics. Every phase can be redone
    from the checkpoint taken at the last step (it carries the fit loop, the measured throughput
    and the final train loss): a resumed fit with nothing left to train runs no train hooks."""
    cfg, t, module = cell.config, cell.config.train, parts.module
    fit_module = compiling.for_fit(module, cfg)  # a clean dynamo cache; regional or whole, before fit
    trainer = parts.trainer = make_trainer(
        cfg, max_steps=t.max_steps, accumulate_grad_batches=t.grad_accum,
        val_check_interval=t.val_every * t.grad_accum, check_val_every_n_epoch=None,
        # the sanity pass over the whole in-domain split is the init validation (none on a resume: kept)
        num_sanity_val_steps=-1 if t.init_val and resume is None else 0,
        log_every_n_steps=t.log_every, deterministic=t.deterministic,
        logger=build_loggers(opts.loggers, folder, parts.claim.held if parts.claim is not None else None),
        callbacks=parts.callbacks, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=folder,
        plugins=[AtomicCheckpointIO(lambda: ensure_held(parts.claim, "checkpoint save"))])
    trainer.fit(fit_module, datamodule=dm, ckpt_path=resume)
    no_op = resume is not None and parts.metrics.start_step is None  # nothing was left to train: no train hooks ran
    if no_op:
        settle_loop(trainer)
        parts.saver.replay_row(trainer)
    if resume is not None:
        record.resumed_from_step = parts.metrics.start_step if parts.metrics.start_step is not None \
            else trainer.global_step
    pause_point("final-checkpoint")
    if module.validated_at != trainer.global_step:  # final metrics always come from the last step
        trainer.validate(module, datamodule=dm, verbose=False)
    pause_point("probes")
    if no_op and parts.probes:  # the train-end hooks (end-of-training analyses) the no-op fit skipped
        if parts.progress is not None:
            parts.progress.set_phase(trainer, "probes")
        for probe in parts.probes.values():
            probe.on_train_end(trainer, module)
    if not parts.metrics.result:
        parts.metrics.on_train_end(trainer, module)
    loss = module.last_train_loss
    tokens = trainer.global_step * t.batch_size * cfg.model.block_size * t.grad_accum * trainer.world_size
    record.metrics = Metrics.from_dict({"train_loss": float(loss) if loss is not None else None,
                                        **module.val_results, **parts.metrics.result,
                                        **module.eval_metrics(parts.metrics.result.get("train_seconds")),
                                        "steps": trainer.global_step, "tokens": tokens})
    record.status = "ok"
    if opts.save_weights:
        from ...results.weights import save_cell

        ensure_held(parts.claim, "weights")
        record.weights = save_cell(folder, module.model, cfg, dm.tokenizer)


def settle_loop(trainer) -> None:
    """A resumed fit with nothing left to train leaves the loop counters as the checkpoint had them
    (taken inside the last step); the final validation logs its curve row at them. Set them as an
    uninterrupted fit leaves them: the last step counted, the epoch closed."""
    loop = trainer.fit_loop
    loop.epoch_loop._batches_that_stepped = trainer.global_step
    for p in (loop.epoch_progress.current, loop.epoch_progress.total):
        p.processed = p.completed = p.started


def _interrupted(e, parts, cell, folder):
    step = parts.trainer.global_step if parts and parts.trainer else None
    return {"error": "interrupted by a signal", "interrupted_step": step,
            "checkpoint_step": parts.saver.interrupt_step if parts else None}, None


def _diverged(e, parts, cell, folder):
    m = parts.metrics.result if parts else {}
    m = {**m, **parts.module.eval_metrics(m.get("train_seconds"))} if parts else m
    return {"error": str(e), "diverged_step": e.step, "metrics": Metrics.from_dict({**m, "steps": e.step})}, None


def _os_error(e, parts, cell, folder):
    if e.errno not in ENV_ERRNOS:
        return _failed(e, parts, cell, folder)
    user = env_error(e, f"{cell.id}: cannot write under {folder}")
    return {"error": str(user), "traceback": traceback.format_exc()}, user


def _failed(e, parts, cell, folder):
    return {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}, None


# exception -> (status, fields for the record and the user's error, if any); the first match wins
OUTCOMES = (
    (SIGTERMException, "interrupted", _interrupted),
    (ClaimLost, "lost", lambda e, *a: ({"error": str(e)}, None)),
    (Diverged, "diverged", _diverged),
    (torch.OutOfMemoryError, "oom", lambda e, *a: ({"error": str(e), "traceback": traceback.format_exc()}, None)),
    (ConfigError, "failed", lambda e, *a: ({"error": str(e)}, e)),
    (OSError, "failed", _os_error),
    (Exception, "failed", _failed),
)


def outcome(e: Exception, parts: Parts | None, cell: Cell, folder: Path) -> tuple[str, dict, ConfigError | None]:
    for kind, status, details in OUTCOMES:
        if isinstance(e, kind):
            fields_, user = details(e, parts, cell, folder)
            return status, fields_, user
    raise e


def finish_record(record: Record, parts: Parts | None, cfg, wall: float) -> None:
    """What the record says about any run, finished or not: probes so far, time, environment."""
    for name, probe in (parts.probes if parts is not None else {}).items():  # also after a divergence: so far
        where = record_field(name)  # a built-in's typed field, else extra_probes[name]
        if where is not None:
            setattr(record, where, probe.result())
        else:
            record.extra_probes = {**(record.extra_probes or {}), name: probe.result()}
    trainer = parts.trainer if parts is not None else None
    record.wall_seconds, record.ended = time.perf_counter() - wall, now()
    device = trainer.strategy.root_device if trainer is not None else root_device(cfg)
    record.environment = environment_record(device)
    record.precision = trainer.precision if trainer is not None else cfg.train.precision  # as run
    record.extra.update(describe_precision(cfg.train.precision, as_run=record.precision))  # fp8: name, recipe
    record.device = str(device)


def write_final(record: Record, folder: Path, warn) -> ConfigError | None:
    """Write the record; a failure is returned as the user's error (never hiding the cell's own,
    which the caller keeps first)."""
    try:
        pause_point("record")
        write_json(folder / "record.json", record)
        pause_point("record-written")
    except (OSError, ValueError) as e:
        warn(f"could not write the record of {record.id}: {type(e).__name__}: {e}")
        if isinstance(e, OSError) and e.errno in ENV_ERRNOS:
            return env_error(e, f"{record.id}: cannot write its record")
        return ConfigError(f"{record.id}: cannot write its record: {e}")
    return None


def train_cell(cell: Cell, matrix_name: str, dm, opts: RunOptions, progress=None, warn=None,
               stop: StopRequest | None = None, claim=None) -> Record:
    """Train one cell and return its record (status ok/diverged/oom/failed/interrupted); a training
    failure is recorded and the matrix goes on. A cell whose claim is taken over stops and writes
    nothing more (status 'lost', not written). Raises ConfigError for what the user must fix (no
    GPU, full disk...), after recording the cell."""
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    cfg = cell.config
    folder = cell_dir(opts.out, matrix_name, cell.id)
    ckpt_dir = folder / "checkpoints"
    writer = is_rank_zero()  # other DDP/FSDP ranks train too, but write nothing
    if opts.force and writer:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    check_vocab(cell.id, cfg, dm)  # before anything is written: a wrong id must not start
    resume = find_resume(ckpt_dir, warn)
    record = new_record(cell, matrix_name, dm, opts)
    task = progress.add_task(f"  {cell.id}", total=cfg.train.max_steps, loss="-", tps="-",
                             phase="train") if progress else None
    wall, parts, user_error = time.perf_counter(), None, None
    try:
        if writer:  # one curve per cell: a resume continues it from the checkpoint's step
            ensure_held(claim, "first write")
            start_curve(folder, checkpoint_step(resume) if resume is not None else None)
            write_json(folder / "record.json", record)  # status 'running': never read as complete
            pause_point("running-record")
        parts = build_parts(cell, dm, opts, ckpt_dir, progress, task, stop, claim)
        record.resumed_from = str(resume) if resume is not None else None
        fit_phases(cell, dm, opts, folder, parts, resume, record)
    except (Exception, SIGTERMException) as e:  # noqa: BLE001 - any failure is recorded and the matrix goes on
        # (SIGTERMException is a SystemExit: caught by name, or a signal exits 0 leaving the record 'running')
        record.status, details, user_error = outcome(e, parts, cell, folder)
        for k, v in details.items():
            setattr(record, k, v)
    if progress is not None and task is not None:
        progress.remove_task(task)
    if record.status == "lost":
        warn(f"{cell.id}: {record.error}")
        return record
    finish_record(record, parts, cfg, wall)
    if not writer:  # rank 0 writes and reports this cell; this rank's record is never used
        return record
    if claim is not None and not claim.held():  # taken over since the last write: the record is the new holder's
        record.status, record.error = "lost", "its claim was taken over before its record was written; left to " \
                                              "the new holder"
        warn(f"{cell.id}: {record.error}")
        return record
    write_error = write_final(record, folder, warn)  # always: the record says what happened
    user_error = user_error or write_error  # the cell's own error first
    if record.status in DONE and not opts.keep_checkpoints and user_error is None \
            and (claim is None or claim.held()):
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        pause_point("checkpoints-removed")
    if user_error is not None:
        raise user_error
    record.path = folder / "record.json"
    return record
