"""Run records on disk: results/<matrix>/<cell id>/record.json, written atomically."""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..atomic import atomic_write


def now() -> str:
    """The UTC time a record or a launch is stamped with, to the second (ISO 8601)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


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


# ---- validation: a record is checked whole, once, when read; readers then trust its types ----------
# A spec is a function (path, value) that raises RecordError naming the field. Numbers are finite
# (NaN, Infinity and ints beyond a float are refused), except in the probes' histories, where a
# diverged cell's NaN is what was measured.

MAX_DEPTH = 32


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _bad(path: str, value, what: str):
    raise RecordError(f"{path} is {_short(value)}, not {what}")


def _finite(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def num(path, v):
    if not _finite(v):
        _bad(path, v, "a finite number")


def measured(path, v):
    """A number as measured: finite, or NaN / Infinity (a diverged cell's probes)."""
    if not (_finite(v) or isinstance(v, float)):
        _bad(path, v, "a number")


def integer(path, v):
    if isinstance(v, bool) or not isinstance(v, int) or abs(v) >= 2**63:
        _bad(path, v, "an integer")


def positive(path, v):
    integer(path, v)
    if v < 1:
        _bad(path, v, "a positive integer")


def text(path, v):
    if not isinstance(v, str):
        _bad(path, v, "a string")


def flag(path, v):
    if not isinstance(v, bool):
        _bad(path, v, "true or false")


def opt(spec):
    def check(path, v):
        if v is not None:
            spec(path, v)
    return check


def list_of(spec):
    def check(path, v):
        if not isinstance(v, list):
            _bad(path, v, "a list")
        for i, x in enumerate(v):
            spec(f"{path}[{i}]", x)
    return check


def dict_of(spec):
    def check(path, v):
        if not isinstance(v, dict):
            _bad(path, v, "an object")
        for k, x in v.items():
            spec(f"{path}.{k}", x)
    return check


def json_value(path, v, depth: int = 0, finite: bool = True):
    """Any JSON whose numbers are finite (or, ``finite`` False, NaN/Infinity too), nested at most
    MAX_DEPTH deep: the fields no reader types."""
    if depth > MAX_DEPTH:
        _bad(path, v, f"nested at most {MAX_DEPTH} deep")
    if isinstance(v, dict):
        for k, x in v.items():
            json_value(f"{path}.{k}", x, depth + 1, finite)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            json_value(f"{path}[{i}]", x, depth + 1, finite)
    elif not (v is None or isinstance(v, (str, bool)) or _finite(v) or (not finite and isinstance(v, float))):
        _bad(path, v, "a finite number" if isinstance(v, (int, float)) else "JSON")


def measured_json(path, v):
    json_value(path, v, finite=False)


def scalar(path, v):
    if not (v is None or isinstance(v, (str, bool)) or _finite(v)):
        _bad(path, v, "a string, number or boolean")


def obj(known: dict, rest=json_value, required: tuple = ()):
    """An object whose ``known`` keys have their specs and whose other keys ``rest``'s."""
    def check(path, v):
        if not isinstance(v, dict):
            _bad(path, v, "an object")
        missing = [k for k in required if v.get(k) is None]
        if missing:
            raise RecordError(f"{path} lacks {', '.join(missing)}")
        for k, x in v.items():
            (known.get(k) or rest)(f"{path}.{k}", x)
    return check


def array(ndim: int, element=measured):
    """Nested lists ``ndim`` deep, rectangular, of numbers (None where nothing was measured);
    [] stands for no sample."""
    def shape(path, v, depth):
        if depth == ndim:
            if v is not None:
                element(path, v)
            return ()
        if not isinstance(v, list):
            _bad(path, v, f"a list ({ndim - depth} deep)")
        inner = {shape(f"{path}[{i}]", x, depth + 1) for i, x in enumerate(v)}
        if len(inner) > 1:
            raise RecordError(f"{path} is a ragged list (rows of different lengths)")
        return (len(v), *(inner.pop() if inner else ()))

    def check(path, v):
        if v != []:
            shape(path, v, 0)
    return check


def series(*names, steps: str = "steps", ndim: int = 2):
    """Per-sample histories: one row per entry of ``steps``."""
    def check(path, v):
        n = len(v.get(steps) or [])
        for name in names:
            rows = v.get(name)
            if isinstance(rows, list) and rows and len(rows) != n:
                raise RecordError(f"{path}.{name} has {len(rows)} rows for {n} {steps}")
    return check


def both(*specs):
    def check(path, v):
        for spec in specs:
            spec(path, v)
    return check


STEPS = array(1, integer)
HISTORIES = ("act_var", "grad_norm", "weight_norm", "attn_weight_norm", "ffn_weight_norm", "ffn_max_abs",
             "ffn_kurtosis", "gpas_gate", "gpas_scale")
PROBES = both(obj({
    "every": opt(integer), "steps": STEPS, **{h: opt(array(2)) for h in HISTORIES},
    "grad_norm_basis": opt(text), "probe_tokens": opt(integer), "loss_spikes": opt(integer),
    "spike_steps": opt(list_of(integer)), "spike_rule": opt(dict_of(num)),
    "effective_rank": opt(dict_of(measured)), "layer_cosine": opt(array(2)),
    "layer_importance": opt(array(1)), "base_loss": opt(measured), "importance_tokens": opt(integer),
    "overhead_seconds": opt(num), "overhead_train_seconds": opt(num), "overhead_end_seconds": opt(num)},
    rest=measured_json), series(*HISTORIES))
OUTLIERS = both(obj({
    "steps": STEPS, "sites": opt(dict_of(dict_of(opt(array(2))))), "stats": opt(list_of(text)),
    "probe_tokens": opt(integer), "overhead_seconds": opt(num)}, rest=measured_json),
    lambda path, v: [series(*stats, ndim=2)(f"{path}.sites.{site}", {**stats, "steps": v.get("steps")})
                     for site, stats in (v.get("sites") or {}).items()])
MOE = both(obj({
    "every": opt(integer), "capacity_factor": opt(num), "basis": opt(text), "steps": STEPS, "load": opt(array(3)),
    **{k: opt(array(2)) for k in ("load_max_over_mean", "router_entropy", "dropped_fraction", "lb_loss",
                                  "z_loss")}}, rest=measured_json),
    series("load", "load_max_over_mean", "router_entropy", "dropped_fraction", "lb_loss", "z_loss"))
CONFIG = obj({
    "seed": integer, "scale": text, "recipe": text,
    "model": obj({"vocab_size": opt(positive), "block_size": positive, "d_model": positive, "n_layers": positive,
                     "n_heads": positive, "activation": text}),
    "data": obj({"tokenizer": text, "eval": opt(dict_of(text))}),
    "train": obj({"lr": num, "min_lr_ratio": num, "batch_size": positive, "grad_accum": positive,
                     "max_steps": positive, "val_every": positive, "val_tokens": positive, "warmup_steps": integer,
                     "throughput_warmup": integer, "log_every": positive, "probe_every": integer,
                     "nan_check_every": positive, "precision": text, "init_val": flag})})
PARAMS = obj({"total": integer, "non_embedding": integer, "ffn": opt(integer), "intermediate_size": opt(integer),
                 "deviation": opt(num), "active": opt(integer), "expert_ffn": opt(integer)},
                required=("total", "non_embedding"))
DATA = obj({"corpus_fingerprint": opt(text), "tokenizer_fingerprint": opt(text), "vocab_size": opt(positive),
               "unigram_ppl": opt(num), "eval": opt(list_of(text))})
ENVIRONMENT = obj({"packages": opt(dict_of(opt(text))), "python": opt(text), "device": opt(text),
                      "platform": opt(text), "cuda": opt(text), "torch_threads": opt(integer),
                      "git": opt(obj({"commit": opt(text), "dirty": opt(flag)}))})
PLUGINS = obj({"loaded": opt(list_of(json_value)),
                  "parts": opt(dict_of(obj({"name": text, "sha256": opt(text)}, required=("name",))))})
SHARING = obj({"load_avg_1m": opt(num), "cpu_count": opt(integer), "threads": opt(integer),
                  "workers": opt(integer), "shared": opt(flag)})
EVAL = dict_of(obj({"acc": opt(num), "acc_norm": opt(num), "n": opt(integer)}))
RECORD = {  # every field a reader uses; other keys are kept as JSON
    "matrix": text, "config_hash": text, "axes": dict_of(scalar), "config": CONFIG, "params": opt(PARAMS),
    "data": DATA, "probes": opt(PROBES), "environment": ENVIRONMENT, "precision": opt(text), "device": opt(text),
    "moe": opt(MOE), "plugins": PLUGINS, "command": list_of(text), "started": opt(text), "ended": opt(text),
    "wall_seconds": opt(num), "error": opt(text), "traceback": opt(text), "diverged_step": opt(integer),
    "resumed_from": opt(text), "resumed_from_step": opt(integer), "interrupted_step": opt(integer),
    "checkpoint_step": opt(integer), "weights": opt(text), "outliers": opt(OUTLIERS),
    "extra_probes": opt(dict_of(dict_of(measured_json))), "axis_order": opt(dict_of(list_of(scalar))),
    "sharing": opt(SHARING), "eval": opt(EVAL), "fp8_recipe": opt(text), "lightning_precision": opt(text),
}


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
            if k.endswith("_basis"):
                opt(text)(f"metrics.{k}", v)
            elif v is not None and not _finite(v):
                _bad(f"metrics.{k}", v, "a finite number")
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
    weights: str | None = None  # --save-weights: the finished weights' folder, relative to the cell's
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
            raise RecordError(f"status {_short(d['status'])} is not one of {', '.join(STATUSES)}" + (
                " (being trained, or its run was killed: a rerun resumes it)" if d["status"] == "running" else ""))
        for k, spec in (("id", text), ("scale", text), ("activation", text), ("norm", text), ("seed", integer)):
            spec(k, d[k])
        for k, v in d.items():  # every other field, nested ones included, typed once here
            if k not in cls.REQUIRED and k != "metrics" and v is not None:
                (RECORD.get(k) or json_value)(k, v)
        params = d.get("params")
        if params is not None:
            pk = {f.name for f in fields(Params)} - {"extra"}
            params = Params(**{k: v for k, v in params.items() if k in pk},
                            extra={k: v for k, v in params.items() if k not in pk})
        metrics = Metrics.from_dict(d.get("metrics"))
        if d["status"] == "ok" and metrics.val_loss is None and metrics.val_ppl is None:
            raise RecordError("status ok but no val_loss / val_ppl in metrics")
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
    """(record, None), or (None, why it is missing or unusable): never taken as complete then. A
    record counts only in the folder of its own id (a record copied into another cell's folder, or
    into "<id> (copy)", is no record of that folder)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None, "no record.json"
    except (OSError, UnicodeDecodeError) as e:
        return None, f"unreadable: {e}"
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg} at line {e.lineno})"
    except (ValueError, RecursionError) as e:  # a number or a nesting beyond what JSON readers take
        return None, f"not valid JSON ({_short(str(e))})"
    try:
        rec = Record.from_dict(data, Path(path))
    except RecordError as e:
        return None, str(e)
    folder = Path(path).parent.name
    if rec.id != folder:
        return None, (f"its id {_short(rec.id)} is not the name of its folder {_short(folder)}: a copied or misplaced "
                      "record, not counted")
    return rec, None


def _rank(path: Path) -> tuple:
    """Which of several records of one id counts: the shallowest (a matrix folder's own cell folder
    before a backup such as old/<id>), then the first in path order."""
    return len(path.parts), str(path)


def load_records(folder: Path) -> tuple[list[Record], list[Problem]]:
    """Every usable record under a matrix folder (or a folder of matrix folders), each cell id once,
    and one Problem per record.json that is not used (unreadable, incomplete, still `running`,
    misplaced, or a copy of a record already counted): none is dropped silently."""
    found, problems = [], []
    for p in sorted(Path(folder).glob("**/record.json")):
        rec, why = read_record(p)
        if rec is not None:
            found.append(rec)
        else:
            problems.append(Problem(p, why))
    kept: dict[str, Record] = {}
    for rec in sorted(found, key=lambda r: _rank(r.path)):
        first = kept.setdefault(rec.id, rec)
        if first is not rec:
            problems.append(Problem(rec.path, f"a copy of {first.path} (the same cell): counted once"))
    records = [r for r in found if kept[r.id] is r]
    return records, sorted(problems, key=lambda p: str(p.path))


def record_folders(folder: Path) -> dict[str, Path]:
    """Cell id -> the folder whose record counts for it (load_records' rule, read from the folder
    names alone): the curves read beside the records."""
    out: dict[str, Path] = {}
    for p in sorted(Path(folder).glob("**/record.json"), key=_rank):
        out.setdefault(p.parent.name, p.parent)
    return out
