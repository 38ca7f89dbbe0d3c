"""Statistics over run records: confidence intervals over seeds, significance against a baseline,
time-to-target from the training curves, and scaling-law fits across scales.

Every function here is pure (Records, or record dicts, and curve dicts in, numbers and small dataclasses out),
except ``read_curve`` / ``load_curves``, which read the ``metrics.csv`` files beside the records.

Decisions (also stated in the tables' legends):

- Confidence interval: Student t over seeds, ``mean ± t_{0.975, n-1} * s / sqrt(n)`` with the
  sample standard deviation ``s`` (n-1 in the denominator). One seed: the mean, no interval.
- Significance against a baseline: ``bench.results.paired`` (paired t on per-seed differences,
  Welch for unpaired groups, Holm-corrected); here only the baseline's choice (``parse_baseline``,
  ``baseline_groups``).
- Time-to-target: the first validation point whose loss is <= the target (resolution: the
  validation interval, no interpolation). Tokens = optimizer steps * tokens per step; seconds from
  a time column of the curve when there is one, otherwise an estimate: the record's measured
  training seconds * step / steps (assumes a constant step time; validation time excluded).
- Scaling: per (activation, norm) group, every ok seed is one point (N = non-embedding
  parameters, or compute C = 6 N D with D the training tokens). With >= 4 distinct scales
  ``L = A * x^(-alpha) + E`` by nonlinear least squares (scipy's curve_fit), otherwise the pure
  power law ``log L = log A - alpha log x`` by ordinary least squares; standard errors from the
  fit's covariance matrix (none when the fit has no residual degrees of freedom).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import optimize
from scipy import stats as sps

from .records import Record, as_record

CONFIDENCE = 0.95
ALPHA = 0.05
# Columns a curve may carry with the training time at that row (seconds since the start of training).
TIME_COLUMNS = ("train/seconds", "train_seconds", "time/train_seconds", "elapsed_seconds", "time")


# ---- mean and confidence interval --------------------------------------------------------------

@dataclass(frozen=True)
class Summary:
    """Mean over seeds with a Student-t confidence interval (``half_width`` None when n < 2)."""

    mean: float
    n: int
    std: float | None
    half_width: float | None
    confidence: float = CONFIDENCE

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width


def summarize(values, confidence: float = CONFIDENCE) -> Summary:
    """Mean and the two-sided Student-t interval ``t_{(1+c)/2, n-1} * s / sqrt(n)``."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("summarize needs at least one value")
    n = len(vals)
    mean = statistics.fmean(vals)
    if n < 2:
        return Summary(mean, n, None, None, confidence)
    std = statistics.stdev(vals)
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Summary(mean, n, std, half, confidence)


# ---- groups of seed repeats --------------------------------------------------------------------

def final_val_loss(record: Record) -> float | None:
    """The final validation loss of an ok record (None otherwise)."""
    record = as_record(record)
    if record.status != "ok":
        return None
    m = record.metrics
    if m.val_loss is not None:
        return float(m.val_loss)
    if m.val_ppl is not None and m.val_ppl > 0:
        return math.log(m.val_ppl)
    return None


def final_val_ppl(record: Record) -> float | None:
    record = as_record(record)
    if record.status != "ok":
        return None
    m = record.metrics
    if m.val_ppl is not None:
        return float(m.val_ppl)
    return math.exp(m.val_loss) if m.val_loss is not None else None


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def row_labels(records: list[Record]) -> dict[str, str]:
    """Cell id -> its group's row label: the activation, plus any config field (seed aside) that
    differs between cells of the same scale, activation and scheme, so only true seed repeats are
    pooled."""
    groups = defaultdict(list)
    for r in map(as_record, records):
        groups[(r.scale, r.activation, r.norm)].append(r)
    labels = {}
    for recs in groups.values():
        flats = [_flat(r.config) for r in recs]
        varying = sorted({k for f in flats for k in f
                          if k != "seed" and len({repr(g.get(k)) for g in flats}) > 1})
        for r, f in zip(recs, flats):
            labels[r.id] = r.activation + "".join(f" [{k}={f.get(k)}]" for k in varying)
    return labels


def run_order(records: list[Record]) -> list[Record]:
    """The records in the order they were started (a matrix trains its cells in the matrix's order,
    whatever the folder names sort as); records without a start time keep their place among equals."""
    return sorted(map(as_record, records), key=lambda r: str(r.started or ""))


def _flag_values(command, flag: str) -> list[str]:
    """The comma-separated values of ``flag`` in a recorded command line ([] if absent)."""
    cmd = [str(a) for a in command or []]
    for i, a in enumerate(cmd):
        if a == flag and i + 1 < len(cmd):
            return [v.strip() for v in cmd[i + 1].split(",") if v.strip()]
        if a.startswith(flag + "="):
            return [v.strip() for v in a[len(flag) + 1:].split(",") if v.strip()]
    return []


def cell_order(records: list[Record]) -> dict[str, tuple[list[str], list[str]]]:
    """scale -> (row labels, norms) in the order of the pivot. Activations and norms named on a
    recorded command line (``--activation b,a``) come first, in that order; the rest follow in run
    order (the order of the matrix file when it was run whole)."""
    recs = run_order(records)
    labels = row_labels(records)
    named: dict[str, list[str]] = {"--activation": [], "--norm": []}
    for r in recs:
        for flag, seen in named.items():
            seen += [v for v in _flag_values(r.command, flag) if v not in seen]
    order: dict[str, tuple[list[str], list[str]]] = {}
    for r in recs:
        rows, cols = order.setdefault(r.scale, ([], []))
        if labels[r.id] not in rows:
            rows.append(labels[r.id])
        if r.norm not in cols:
            cols.append(r.norm)

    def rank(names: list[str]):
        return lambda v: names.index(v) if v in names else len(names)

    for rows, cols in order.values():  # stable sorts: run order among the unnamed
        rows.sort(key=lambda lab, f=rank(named["--activation"]): f(lab.split(" [")[0]))
        cols.sort(key=rank(named["--norm"]))
    return order


def group_records(records: list[Record]) -> dict[tuple[str, str, str], list[Record]]:
    """(scale, row label, norm) -> the records of that group (seed repeats, in run order); groups
    by scale (run order), then row and column as ``cell_order`` orders them."""
    labels = row_labels(records)
    order = cell_order(records)
    scales = list(order)
    out: dict[tuple[str, str, str], list[Record]] = {}
    for r in run_order(records):
        out.setdefault((r.scale, labels[r.id], r.norm), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: (scales.index(kv[0][0]), order[kv[0][0]][0].index(kv[0][1]),
                                                   order[kv[0][0]][1].index(kv[0][2]))))


# ---- significance against a baseline ------------------------------------------------------------

def parse_baseline(text: str | None) -> tuple[str, str] | None:
    """'ACT:NORM' -> (act, norm); None -> None (the default baseline)."""
    if text is None or text == "":
        return None
    if ":" not in text:
        raise ValueError(f"baseline must be ACTIVATION:NORM (e.g. swiglu:pre), got {text!r}")
    act, norm = text.rsplit(":", 1)
    if not act.strip() or not norm.strip():
        raise ValueError(f"baseline must be ACTIVATION:NORM (e.g. swiglu:pre), got {text!r}")
    return act.strip(), norm.strip()


def baseline_groups(records: list[Record], baseline: tuple[str, str] | None = None) -> dict[str, tuple[str, str] | None]:
    """scale -> the (row label, norm) of its baseline group. Default: the first row x the first
    column of each scale as ``cell_order`` orders them (the matrix's first activation and norm). A given
    (act, norm) matches a row label exactly, or else the first row of that activation; a scale
    without it gets None. Raises ValueError if no scale has it."""
    out = {}
    for scale, (rows, cols) in cell_order(records).items():
        if baseline is None:
            out[scale] = (rows[0], cols[0])
            continue
        act, norm = baseline
        row = act if act in rows else next((r for r in rows if r.split(" [")[0] == act), None)
        out[scale] = (row, norm) if row is not None and norm in cols else None
    if baseline is not None and not any(out.values()):
        groups = sorted({f"{r.split(' [')[0]}:{c}" for rows, cols in cell_order(records).values()
                         for r in rows for c in cols})
        raise ValueError(f"baseline {baseline[0]}:{baseline[1]} is not among the cells; valid: {', '.join(groups)}")
    return out


def parse_curve(text: str) -> dict[str, list[tuple[int, float]]]:
    """A Lightning CSVLogger metrics.csv -> column -> [(step, value)] sorted by step, empty cells
    dropped. ``step`` is the logged (zero-based) optimizer step."""
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in csv.DictReader(io.StringIO(text)):
        try:  # a garbled row (cut by a kill, overwritten) is skipped, not fatal
            s = int(float(row.get("step") or ""))
        except (ValueError, TypeError):
            continue
        for k, v in row.items():
            if k in ("step", "epoch") or k is None or v in (None, ""):
                continue
            try:
                out[k].append((s, float(v)))
            except (ValueError, TypeError):
                continue
    return {k: sorted(v, key=lambda x: x[0]) for k, v in out.items()}


def read_curve(path: Path) -> dict[str, list[tuple[int, float]]] | None:
    try:
        return parse_curve(Path(path).read_text())
    except (OSError, UnicodeDecodeError, csv.Error):  # missing or garbled beyond parsing: no curve
        return None


def load_curves(folder: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Record id -> its parsed metrics.csv for every cell folder under ``folder`` (the cell folder's
    name is the record id)."""
    out = {}
    for rec in sorted(Path(folder).glob("**/record.json")):
        curve = read_curve(rec.parent / "metrics.csv")
        if curve:
            out[rec.parent.name] = curve
    return out


def tokens_per_step(record: Record) -> int | None:
    """train.batch_size * model.block_size * train.grad_accum (per process, as the record counts)."""
    record = as_record(record)
    m = record.metrics
    if m.tokens and m.steps:
        return int(round(m.tokens / m.steps))
    cfg = record.config
    try:
        t, mod = cfg["train"], cfg["model"]
        return int(t["batch_size"]) * int(mod["block_size"]) * int(t.get("grad_accum", 1))
    except (KeyError, TypeError):
        return None


@dataclass(frozen=True)
class TimeToTarget:
    target: float
    reached: bool
    step: int | None = None  # optimizer steps done at the first validation point <= target
    tokens: int | None = None
    seconds: float | None = None
    seconds_estimated: bool = True  # True: train_seconds * step / steps; False: from a time column
    loss: float | None = None  # the validation loss at that point


def _steps_done(logged_step: int, total: int | None) -> int:
    """Lightning logs validation (and training) rows before it counts the optimizer step that just
    ran: logged step k means k + 1 steps done. A validation after fit logs the final count itself."""
    done = logged_step + 1
    return min(done, total) if total else done


def time_to_target(record: Record, curve: dict[str, list[tuple[int, float]]] | None, target: float,
                   column: str = "val/loss") -> TimeToTarget:
    """Tokens and seconds until the validation loss first reaches ``target`` (<=)."""
    if not curve or column not in curve:
        return TimeToTarget(target, False)
    record = as_record(record)
    m = record.metrics
    total = m.steps
    hit = next(((s, v) for s, v in curve[column] if v <= target), None)
    if hit is None:
        return TimeToTarget(target, False)
    logged, loss = hit
    step = _steps_done(logged, total)
    tps = tokens_per_step(record)
    seconds, estimated = None, True
    tcol = next((c for c in TIME_COLUMNS if c in curve), None)
    if tcol is not None:  # the last time stamp at or before the hit
        before = [v for s, v in curve[tcol] if s <= logged]
        if before:
            seconds, estimated = before[-1], False
    if seconds is None and m.train_seconds and total:
        seconds = float(m.train_seconds) * step / total
    return TimeToTarget(target, True, step, step * tps if tps else None, seconds, estimated, loss)


# ---- scaling fits -------------------------------------------------------------------------------

SATURATING = "L = A * x^(-alpha) + E"
POWER_LAW = "log L = log A - alpha log x"


@dataclass
class ScalingFit:
    group: tuple[str, str]  # (activation label, norm)
    x: str  # "N" (non-embedding parameters) or "C" (compute 6 N D)
    form: str  # SATURATING or POWER_LAW
    n_points: int
    n_scales: int
    A: float
    alpha: float
    alpha_se: float | None
    E: float | None = None  # only in the saturating form
    E_se: float | None = None
    note: str = ""
    xs: list[float] = field(default_factory=list, repr=False)
    ys: list[float] = field(default_factory=list, repr=False)

    def predict(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return self.A * x ** (-self.alpha) + (self.E or 0.0)


def fit_power_law(xs, ys) -> tuple[float, float, float | None]:
    """OLS of log y = log A - alpha log x: (A, alpha, standard error of alpha or None with < 3
    points or collinear data)."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    n = len(lx)
    if n < 2 or np.ptp(lx) == 0:
        raise ValueError("a power-law fit needs at least 2 distinct x values")
    sxx = float(np.sum((lx - lx.mean()) ** 2))
    slope = float(np.sum((lx - lx.mean()) * (ly - ly.mean())) / sxx)
    intercept = float(ly.mean() - slope * lx.mean())
    se = None
    if n > 2:
        resid = ly - (intercept + slope * lx)
        se = math.sqrt(float(np.sum(resid ** 2)) / (n - 2) / sxx)
    return math.exp(intercept), -slope, se


def fit_saturating(xs, ys) -> tuple[float, float, float, float | None, float | None]:
    """Nonlinear least squares of y = A x^-alpha + E: (A, alpha, E, se(alpha), se(E)). x is scaled
    by its geometric mean for conditioning (alpha and E are unchanged by that). Raises RuntimeError
    if the fit does not converge."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    x0 = float(np.exp(np.mean(np.log(x))))
    u = x / x0
    e0 = 0.5 * float(np.min(y))
    try:
        a0, alpha0, _ = fit_power_law(u, y - e0)
    except ValueError:
        a0, alpha0 = float(np.max(y) - e0), 0.3
    f = lambda uu, a, alpha, e: a * uu ** (-alpha) + e  # noqa: E731
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", optimize.OptimizeWarning)  # singular covariance: se = None below
        popt, pcov = optimize.curve_fit(f, u, y, p0=(a0, alpha0, e0), maxfev=20000)
    a, alpha, e = (float(v) for v in popt)
    if not all(map(math.isfinite, (a, alpha, e))):
        raise RuntimeError("the saturating fit did not converge")
    dof = len(x) - 3
    se_alpha = se_e = None
    if dof > 0 and np.all(np.isfinite(pcov)):
        se_alpha, se_e = math.sqrt(max(0.0, pcov[1, 1])), math.sqrt(max(0.0, pcov[2, 2]))
    return a * x0 ** alpha, alpha, e, se_alpha, se_e


def scaling_points(records: list[Record]) -> dict[tuple[str, str], list[tuple[str, float, float, float]]]:
    """(activation label, norm) -> [(scale, N non-embedding, C = 6 N D, final val loss)] per ok record."""
    labels = row_labels(records)
    out: dict[tuple[str, str], list] = defaultdict(list)
    for r in map(as_record, records):
        loss = final_val_loss(r)
        n = r.params.non_embedding if r.params else None
        if loss is None or not n:
            continue
        m = r.metrics
        d = m.tokens or ((tokens_per_step(r) or 0) * (m.steps or 0))
        out[(labels[r.id], r.norm)].append((r.scale, float(n), 6.0 * n * d if d else float("nan"), loss))
    return dict(out)


def scaling_fits(records: list[Record], min_saturating_scales: int = 4) -> list[ScalingFit]:
    """A fit of final validation loss against N and against C for each (activation, norm) group
    present at >= 2 scales. Saturating form with >= ``min_saturating_scales`` scales (falls back to
    the power law, and says so, if it does not converge); pure power law otherwise."""
    fits = []
    for group, pts in scaling_points(records).items():
        scales = {p[0] for p in pts}
        if len(scales) < 2:
            continue
        for xname, idx in (("N", 1), ("C", 2)):
            use = [(p[idx], p[3]) for p in pts if math.isfinite(p[idx]) and p[idx] > 0]
            xs, ys = [u[0] for u in use], [u[1] for u in use]
            if len({x for x in xs}) < 2:
                continue
            note = ""
            if len(scales) >= min_saturating_scales:
                try:
                    a, alpha, e, se, e_se = fit_saturating(xs, ys)
                    notes = (["no residual dof or singular fit: no standard error"] if se is None else []) + \
                        (["E < 0: no loss floor in this range"] if e < 0 else [])
                    fits.append(ScalingFit(group, xname, SATURATING, len(xs), len(scales), a, alpha, se, e, e_se,
                                           "; ".join(notes), xs, ys))
                    continue
                except (RuntimeError, ValueError) as exc:
                    note = f"saturating fit failed ({exc}); "
            a, alpha, se = fit_power_law(xs, ys)
            if se is None:
                note += "2 points: exact fit, no standard error"
            elif len(scales) < min_saturating_scales:
                note += f"{len(scales)} scales: pure power law (the saturating form needs {min_saturating_scales})"
            fits.append(ScalingFit(group, xname, POWER_LAW, len(xs), len(scales), a, alpha, se, None, None,
                                   note.rstrip("; "), xs, ys))
    return fits


# ---- cost / quality frontier --------------------------------------------------------------------

def pareto_front(points) -> list[int]:
    """Indices of the points (speed, ppl) that no other point dominates (at least as fast and at
    least as good, better in one), sorted by speed: the cost/quality frontier (higher speed and
    lower PPL are better)."""
    pts = [(float(s), float(q)) for s, q in points]
    front = []
    for i, (s, q) in enumerate(pts):
        dominated = any(s2 >= s and q2 <= q and (s2 > s or q2 < q) for j, (s2, q2) in enumerate(pts) if j != i)
        if not dominated and math.isfinite(s) and math.isfinite(q):
            front.append(i)
    return sorted(front, key=lambda i: pts[i][0])
