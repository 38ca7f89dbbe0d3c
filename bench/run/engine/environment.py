"""The cell's surroundings, checked before and around training: its data (DataCache), its Trainer
(accelerator, devices, strategy and precision; Lightning's complaints as one line), loggers, the
output folder, and filesystem conditions a user fixes (full disk, permissions) as one line, exit 2."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from ...errors import ConfigError, Interrupted
from .curve_log import CurveLogger
from ..config.matrix import Cell
from ..config.precision import lightning_precision


def build_loggers(names, folder: Path, held=None):
    """The cell's Lightning loggers; ``held`` (the claim's check) guards every write of the curve."""
    loggers = []
    for name in names:
        if name == "csv":
            loggers.append(CurveLogger(folder, held))  # -> folder/metrics.csv, continued across resumes
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
        from datamodules.datamodule import TextDataModule
        from datamodules.chunks import Stopped

        key = (repr(cfg.data), cfg.model.block_size, cfg.train.batch_size, cfg.seed, cfg.train.val_tokens)
        if key not in self._dms:
            dm = TextDataModule(cfg.data, seq_len=cfg.model.block_size, batch_size=cfg.train.batch_size,
                                seed=cfg.seed, val_tokens=cfg.train.val_tokens)
            try:
                dm.prepare_data()
                dm.setup("fit")
                dm.train_dataloader()  # checks the training split holds at least one row
            except UnicodeDecodeError as e:
                raise ConfigError(f"corpus {cfg.data.corpus} is not UTF-8 text (byte {e.start}: {e.reason}); "
                                  "give a text, .jsonl or .parquet corpus") from None
            except Stopped as e:  # a signal while its chunks were written: nothing reads as complete
                raise Interrupted(e.signum, f"interrupted by {signal.Signals(e.signum).name} while preparing "
                                            f"{cfg.data.corpus}; rerun the same command to resume") from None
            except OSError as e:
                if e.errno not in ENV_ERRNOS:
                    raise
                raise env_error(e, f"cannot write the data cache of {cfg.data.corpus}") from None
            except ValueError as e:  # CorpusError included: an empty, unreadable or too short corpus
                raise ConfigError(f"corpus {cfg.data.corpus}: {e}") from None
            self._dms[key] = dm
        return self._dms[key]


def check_vocab(name: str, cfg, dm) -> None:
    """The config decided the vocabulary before the cell's id was hashed (bench.run.config.data_checks);
    a data module that disagrees would train the cell under an id hashed from another vocabulary."""
    if dm.vocab_size != cfg.model.vocab_size:
        raise ConfigError(f"{name}: the data gives a vocabulary of {dm.vocab_size} but the config decided "
                          f"{cfg.model.vocab_size} (its id was hashed with it); the tokenizer changed since the "
                          "cells were made: run the command again")


ENV_ERRNOS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only filesystem",
              errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
              errno.ENOTDIR: "not a folder", errno.EEXIST: "a file is in the way"}


def env_error(e: OSError, what: str) -> ConfigError:
    """A filesystem condition the user fixes (free space, permissions): one line, exit 2."""
    reason = ENV_ERRNOS.get(e.errno, e.strerror or type(e).__name__)
    where = f" ({e.filename})" if e.filename else ""
    return ConfigError(f"{what}: {reason}{where}; fix it and rerun: finished cells are kept and the cell resumes "
                       "from its last good checkpoint")


def make_trainer(cfg, **kw) -> L.Trainer:
    """The cell's Trainer; Lightning's complaints about accelerator, devices, strategy or precision
    (e.g. no GPU) become one ConfigError line."""
    t = cfg.train
    try:
        return L.Trainer(accelerator=t.accelerator, devices=devices_arg(t.devices), strategy=t.strategy,
                         num_nodes=t.num_nodes, precision=lightning_precision(t.precision), **kw)
    except (MisconfigurationException, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot run on --train.accelerator {t.accelerator} --train.devices {t.devices} "
                          f"--train.strategy {t.strategy} --train.precision {t.precision}: {first}") from None


def environment_record(device):
    from .system import environment

    try:
        return environment(device)
    except Exception as e:  # noqa: BLE001 - provenance must not replace the cell's own error
        return {"error": f"{type(e).__name__}: {e}"}


def devices_arg(devices: str):
    return int(devices) if str(devices).isdigit() else devices


def check_out(out: Path) -> None:
    """--out must be a folder this process can create files in: one line otherwise."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder: name a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise env_error(e, f"--out {out} is not writable") from None


def preflight(cells: list[Cell]) -> None:
    """Accelerator, devices, strategy and precision of every cell, before anything trains."""
    seen = set()
    for cell in cells:
        t = cell.config.train
        key = (t.accelerator, t.devices, t.strategy, t.num_nodes, t.precision)
        if key not in seen:
            seen.add(key)
            make_trainer(cell.config, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
