"""Run records on disk: results/<matrix>/<cell id>/record.json, written atomically."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..atomic import atomic_write

STATUSES = ("ok", "diverged", "oom", "failed", "interrupted")  # a record with another status is incomplete
DONE = ("ok", "diverged")  # not trained again on a rerun; failed, oom and interrupted cells are retried


def cell_dir(out: Path, matrix: str, cell_id: str) -> Path:
    return Path(out) / matrix / cell_id


def write_text(path: Path, text: str) -> None:
    """Atomic (bench.atomic): a reader sees the old file or the new one, never half of one."""
    atomic_write(path, text)


def write_json(path: Path, data) -> None:
    data = data.to_dict() if hasattr(data, "to_dict") else data
    atomic_write(path, json.dumps(data, indent=2, default=str))


class RecordError(ValueError):
    """Why a record.json cannot be used (one line)."""


_NUM = (int, float, type(None))


@dataclass
class Metrics:
    """A cell's measured numbers. Every value is a number or None, except the ``*_basis`` texts;
    keys this class does not name (per-domain losses, MoE statistics...) are kept in ``extra``."""

    train_loss: float | None = None
    val_loss: float | None = None
    val_ppl: float | None = None
    ood_loss: float | None = None
    ood_ppl: float | None = None
    tokens_per_sec: float | None = None
    mfu: float | None = None
    flops_per_sec: float | None = None
    flops_per_batch: float | None = None
    peak_flops: float | None = None
    mfu_basis: str | None = None
    flops_basis: str | None = None  # what flops_per_batch counts (MoE: active FLOPs)
    peak_memory_bytes: float | None = None
    peak_memory_basis: str | None = None
    train_seconds: float | None = None
    steady_steps: int | None = None
    steps: int | None = None
    tokens: int | None = None
    init_val_loss: float | None = None  # validation loss before any optimizer step (records before it lack it)
    val_seconds: float | None = None  # time spent validating, the init pass included
    eval_share: float | None = None  # val_seconds / (train_seconds + val_seconds)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d) -> "Metrics":
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise RecordError(f"metrics is a {type(d).__name__}, not an object")
        known = {f.name for f in fields(cls)} - {"extra"}
        for k, v in d.items():
            ok = isinstance(v, (str, type(None))) if k.endswith("_basis") else \
                isinstance(v, (dict, list)) or (isinstance(v, _NUM) and not isinstance(v, bool))
            if not ok:
                raise RecordError(f"metrics.{k} is {v!r}, not a number")
        return cls(**{k: v for k, v in d.items() if k in known},
                   extra={k: v for k, v in d.items() if k not in known})

    def get(self, key: str, default=None):
        """A metric by name, named field or extra key (for columns chosen at run time)."""
        v = getattr(self, key, None) if key != "extra" else None
        v = self.extra.get(key) if v is None else v
        return default if v is None else v

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**{k: v for k, v in d.items() if v is not None}, **self.extra}


@dataclass
class Params:
    total: int
    non_embedding: int
    ffn: int | None = None
    intermediate_size: int | None = None
    deviation: float | None = None
    active: int | None = None  # MoE: parameters one token uses (k routed + shared experts, router)
    expert_ffn: int | None = None  # MoE: one expert's FFN parameters
    extra: dict = field(default_factory=dict)


@dataclass
class Record:
    """One cell's record.json, validated once when read (``Record.from_dict``). Fields the runner
    writes today are attributes; keys added later by other code are kept in ``extra`` and written
    back unchanged by ``to_dict``."""

    id: str
    status: str
    scale: str
    activation: str
    norm: str
    seed: int
    matrix: str = ""
    config_hash: str = ""
    axes: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    params: Params | None = None
    data: dict = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)
    probes: dict | None = None
    environment: dict = field(default_factory=dict)
    precision: str | None = None  # as run: Lightning may substitute (16-mixed on CPU runs bf16-mixed)
    device: str | None = None
    moe: dict | None = None  # routing statistics over training (bench/run/moe_probes.py), MoE cells only
    plugins: dict = field(default_factory=dict)  # plugin modules loaded and the plugin parts used (bench/plugins.py)
    command: list = field(default_factory=list)
    started: str | None = None
    ended: str | None = None
    wall_seconds: float | None = None
    error: str | None = None
    traceback: str | None = None
    diverged_step: int | None = None  # status diverged: the step whose loss first was not finite
    resumed_from: str | None = None  # the checkpoint this run resumed from
    resumed_from_step: int | None = None  # the step training resumed at
    interrupted_step: int | None = None  # status interrupted: the step a signal stopped it at
    checkpoint_step: int | None = None  # status interrupted: the step of the checkpoint saved then
    weights: dict | None = None  # --save-weights: where the finished weights are
    outliers: dict | None = None  # outlier-feature probe (bench/run/outliers.py)
    extra_probes: dict | None = None  # plugins' probes, by name
    axis_order: dict | None = None  # {axis: values in matrix order}; records before it lack it
    sharing: dict | None = None  # load, cores, threads and workers at the start: were costs measured shared?
    extra: dict = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)  # where it was read from (not written)

    REQUIRED = ("id", "status", "scale", "activation", "norm", "seed")

    @classmethod
    def from_dict(cls, d, path: Path | None = None) -> "Record":
        if not isinstance(d, dict):
            raise RecordError(f"a JSON {type(d).__name__}, not an object")
        missing = [k for k in cls.REQUIRED if d.get(k) is None]
        if missing:
            raise RecordError(f"missing field(s): {', '.join(missing)}")
        if d["status"] not in STATUSES:
            raise RecordError(f"status {d['status']!r} is not one of {', '.join(STATUSES)}" + (
                " (being trained, or its run was killed: a rerun resumes it)" if d["status"] == "running" else ""))
        for k, typ in (("id", str), ("scale", str), ("activation", str), ("norm", str), ("seed", int)):
            if not isinstance(d[k], typ) or isinstance(d[k], bool):
                raise RecordError(f"{k} is {d[k]!r}, not a {typ.__name__}")
        for k in ("config", "axes", "data", "environment", "plugins", "moe"):
            if d.get(k) is not None and not isinstance(d[k], dict):
                raise RecordError(f"{k} is not an object")
        params = d.get("params")
        if params is not None:
            if not isinstance(params, dict) or not isinstance(params.get("total"), int) \
                    or not isinstance(params.get("non_embedding"), int):
                raise RecordError("params lacks integer total / non_embedding counts")
            pk = {f.name for f in fields(Params)} - {"extra"}
            params = Params(**{k: v for k, v in params.items() if k in pk},
                            extra={k: v for k, v in params.items() if k not in pk})
        metrics = Metrics.from_dict(d.get("metrics"))
        if d["status"] == "ok" and metrics.val_loss is None and metrics.val_ppl is None:
            raise RecordError("status ok but no val_loss / val_ppl in metrics")
        if d.get("wall_seconds") is not None and not isinstance(d["wall_seconds"], (int, float)):
            raise RecordError("wall_seconds is not a number")
        known = {f.name for f in fields(cls)} - {"extra", "path"}
        plain = {k: d[k] for k in known - {"params", "metrics"} if d.get(k) is not None}
        return cls(**plain, params=params, metrics=metrics, path=path,
                   extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "path")}
        for name in OPTIONAL:  # written only when set: a record without them reads as before
            if d[name] is None:
                del d[name]
        d["metrics"] = self.metrics.to_dict() or None
        if self.params is not None:
            d["params"] = {**{f.name: getattr(self.params, f.name) for f in fields(Params) if f.name != "extra"},
                           **self.params.extra}
        return {**d, **self.extra}


OPTIONAL = ("resumed_from", "resumed_from_step", "interrupted_step", "checkpoint_step", "weights", "outliers",
            "extra_probes", "axis_order", "sharing")


@dataclass
class Problem:
    """A record.json that could not be used, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def read_record(path: Path) -> tuple[Record | None, str | None]:
    """(record, None), or (None, why it is missing or unusable): never taken as complete then."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None, "no record.json"
    except (OSError, UnicodeDecodeError) as e:
        return None, f"unreadable: {e}"
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg} at line {e.lineno})"
    try:
        return Record.from_dict(data, Path(path)), None
    except RecordError as e:
        return None, str(e)


def load_records(folder: Path) -> tuple[list[Record], list[Problem]]:
    """Every usable record under a matrix folder (or a folder of matrix folders), and one Problem
    per record.json that is not (unreadable, incomplete, still `running`): none is dropped silently."""
    records, problems = [], []
    for p in sorted(Path(folder).glob("**/record.json")):
        rec, why = read_record(p)
        if rec is not None:
            records.append(rec)
        else:
            problems.append(Problem(p, why))
    return records, problems

