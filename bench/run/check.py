"""`bench check`: the CI regression check of the model zoo's math.

Every activation (models.ACTIVATIONS) x every scheme (models.SCHEMES) with and without GPAS
(post+gpas, a harness extension, included) is trained at the ``nano`` scale on CPU for a few
dozen steps through a bare in-process loop built from the harness's own pieces (Transformer,
param_groups, lm_loss, cosine_with_warmup, AdamW as the ``cpu`` recipe), on fixed real text. Per
cell it records exact parameter counts, the loss and the global gradient norm at init (one forward
and backward, no update), at a few steps and at the last step, and the loss on a fixed held-out
batch after training, and compares them with the committed baseline
(configs/baselines/check-nano.json): counts exactly, the rest within TOLERANCES.

The cell list comes from the registries, so a new activation or scheme is checked automatically
(and fails as 'new, not in baseline' until ``bench check --update``). Six mixture-of-experts cells
('swiglu/pre@moe': swiglu, polynorm, powlu x pre, pre+gpas at the ``nano-moe`` scale, same data)
follow; ``--ffn dense|moe`` selects either kind. See docs/check.md and docs/moe.md. Parts
registered by a plugin are checked against the user's own ``--baseline FILE`` (docs/plugins.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from models import ACTIVATIONS, SCHEMES, Transformer, check_choice, count_params

from .config import CONFIGS, ConfigError, check_norm, norm_names, resolve
from ..results.records import write_text

BASELINE = CONFIGS / "baselines" / "check-nano.json"
FORMAT = 1

# What every cell trains on (stored in the baseline; a different value needs --update).
SCALE = "nano"
RECIPE = "cpu"
SEED = 0
DEFAULT_STEPS = 24
LOGGED_STEPS = (1, 2, 4, 8, 16)  # steps (before the last) whose train loss and gradient norm are recorded
VAL_ROWS = 64  # held-out rows of block_size + 1 tokens: one fixed validation batch
PROBE_SEED, PROBE_STD = 1, 0.5  # the perturbed-init probe (see perturbed())

# The numbers recorded per cell besides parameter counts: the loss and the global gradient norm (before
# clipping) at init ('init'), at the perturbed init ('perturbed', see perturbed()), at LOGGED_STEPS
# ('stepN') and at the last step ('final'), and the loss on the held-out batch after training ('val').
MEASURED = ("loss", "grad_norm")
UNTRAINED = ("init", "perturbed")  # one forward and backward, no update: pure math, no chaotic growth
# A number passes when |now - baseline| <= abs + rel * |baseline| (docs/check.md: measured noise across
# CPU instruction sets is at most 1/15 of each, the injected bugs 100x to 7500x over); parameter
# counts must match exactly.
TOLERANCES = {
    "loss": {"untrained": (2e-5, 2e-5), "trained": (2e-4, 5e-5)},
    "grad_norm": {"untrained": (1e-5, 1e-4), "trained": (5e-4, 5e-4)},
}

# Tables are wide: give logs and pipes (80 columns by default) room for a full row.
console = Console(width=None if sys.stdout.isatty() else 160)
progress_console = Console(stderr=True)


# ---- the cells ---------------------------------------------------------------------------------

def cell_name(activation: str, norm: str, ffn: str = "dense") -> str:
    """The baseline key of a cell: 'swiglu/pre+gpas', 'swiglu/pre+gpas@moe' for an MoE cell (no config
    hash: a new default must show up as a regression of the cell, not as a new cell)."""
    return f"{activation}/{norm}" + ("" if ffn == "dense" else f"@{ffn}")


def parse_name(name: str) -> tuple[str, str, str]:
    """(activation, norm, ffn) of a baseline key."""
    base, _, ffn = name.partition("@")
    a, _, n = base.partition("/")
    return a, n, ffn or "dense"


def all_cells() -> list[tuple[str, str]]:
    """Every (activation, norm) from the registries, in registry order: post+gpas included."""
    return [(a, n) for a in ACTIVATIONS for n in norm_names()]


# MoE cells (models/moe.py) at MOE_SCALE: nano's shape and data, 4 experts, top-2; the key activations
MOE_SCALE = "nano-moe"
MOE_ACTIVATIONS = ("swiglu", "polynorm", "powlu")
MOE_NORMS = ("pre", "pre+gpas")


def moe_cells() -> list[tuple[str, str, str]]:
    return [(a, n, "moe") for a in MOE_ACTIVATIONS if a in ACTIVATIONS for n in MOE_NORMS]


def uses_plugin(activation: str, norm: str) -> bool:
    """The cell uses a part registered by a plugin (checked against the user's own --baseline file)."""
    return not (ACTIVATIONS.part(activation).builtin and SCHEMES.part(norm.split("+")[0]).builtin)


def select_cells(activations, norms, baseline: dict | None, own_baseline: bool,
                 ffns=None) -> list[tuple[str, ...]]:
    """The cells a check runs. Named ones when --activation/--norm are given; otherwise against the
    committed baseline every built-in cell, against a user's --baseline FILE the cells it holds plus
    every cell that uses a plugin part (every cell when no plugin is loaded)."""
    cells = all_cells() + moe_cells()
    if activations or norms or ffns:
        return [c for c in cells if (not activations or c[0] in activations) and (not norms or c[1] in norms)
                and (not ffns or (c[2:] or ("dense",))[0] in ffns)]
    if not own_baseline:
        return [c for c in cells if not uses_plugin(*c[:2])]
    if not any(uses_plugin(*c[:2]) for c in cells):
        return cells
    held = set((baseline or {}).get("cells", {}))
    return [c for c in cells if uses_plugin(*c[:2]) or cell_name(*c) in held]


def warmup_for(steps: int) -> int:
    return max(1, steps // 4)


def cell_config(activation: str, norm: str, steps: int, ffn: str = "dense"):
    """The resolved RunConfig of one check cell (nano or nano-moe scale, cpu recipe, fixed seed)."""
    return resolve({"scale": SCALE if ffn == "dense" else MOE_SCALE, "recipe": RECIPE, "seed": SEED,
                    "activation": activation, "norm": norm,
                    "data.corpus": "bundled", "data.tokenizer": "bytes",
                    "train.max_steps": steps, "train.warmup_steps": warmup_for(steps)})


def logged_steps(steps: int) -> list[int]:
    return [s for s in LOGGED_STEPS if s < steps - 1]


def settings(steps: int) -> dict:
    """What the numbers depend on besides the code: a baseline made with other settings is not comparable."""
    cfg = cell_config("swiglu", "pre", steps)
    return {"scale": SCALE, "recipe": RECIPE, "seed": SEED, "steps": steps, "warmup_steps": warmup_for(steps),
            "batch_size": cfg.train.batch_size, "block_size": cfg.model.block_size, "val_rows": VAL_ROWS,
            "logged_steps": logged_steps(steps), "probe_seed": PROBE_SEED, "probe_std": PROBE_STD,
            "threads_per_cell": 1}


PER_CELL_FIELDS = ("model.activation", "model.scheme", "model.gpas")


def reference_config(steps: int) -> dict:
    """The resolved config every cell shares (dotted paths), to name what changed when a baseline differs."""
    flat = {}
    for key, value in cell_config("swiglu", "pre", steps).to_dict().items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in flat.items() if k not in PER_CELL_FIELDS}


# ---- the data ----------------------------------------------------------------------------------

@dataclass
class CheckData:
    train: torch.Tensor  # (steps * batch, block + 1) int64, batch s is rows [s*B, (s+1)*B)
    val: torch.Tensor  # (VAL_ROWS, block + 1)
    batch_size: int
    fingerprint: str


def _rows(stream: np.ndarray, n: int, width: int) -> torch.Tensor:
    """n windows of ``width`` tokens at evenly spaced offsets over the whole stream."""
    starts = (np.arange(n, dtype=np.int64) * (len(stream) - width)) // n
    return torch.from_numpy(np.stack([stream[s:s + width] for s in starts]).astype(np.int64))


@cache
def load_data(steps: int) -> CheckData:
    """Fixed real text: the bundled corpus's train and validation documents (TextDataModule's split and
    byte tokenizer), packed with EOS between documents as the harness packs them, cut into windows at
    evenly spaced offsets. No shuffling and no litdata chunks: nothing here depends on a cache or on a
    loader's shuffle algorithm, so the batches are the same on every machine and library version."""
    from datamodules import TextDataModule

    cfg = cell_config("swiglu", "pre", steps)
    dm = TextDataModule(cfg.data, seq_len=cfg.model.block_size, batch_size=cfg.train.batch_size, seed=SEED)
    tok = dm.tokenizer

    def stream(docs) -> np.ndarray:
        eos = np.array([tok.eos_id], dtype=np.int64)
        parts = []
        for ids in tok.encode_batch([d.text for d in docs]):
            parts += [np.asarray(ids, dtype=np.int64), eos]
        return np.concatenate(parts)

    width = cfg.model.block_size + 1
    train = _rows(stream(dm.docs["train"]), steps * cfg.train.batch_size, width)
    val = _rows(stream(dm.docs["val"]), VAL_ROWS, width)
    h = hashlib.sha256()
    for t in (train, val):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return CheckData(train, val, cfg.train.batch_size, h.hexdigest()[:16])


# ---- one cell ----------------------------------------------------------------------------------

def _value(value: torch.Tensor) -> float | None:
    v = value.item()
    return v if math.isfinite(v) else None  # JSON has no NaN; None never matches a finite baseline


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the model at init with every vector and scalar parameter (norm gains, biases, polynomial
    coefficients, PReLU slopes, GPAS gates) moved by PROBE_STD * N(0, 1) from a fixed generator.

    Init values are special points of some formulas: GPAS gates start at 0, where G is the identity in
    the forward and in the backward whether or not the stop-gradient is there; gains start at 1. One
    forward and backward here is still pure math (no training, so no amplification of rounding), but
    every formula is away from its degenerate point."""
    import copy

    probe = copy.deepcopy(model)
    g = torch.Generator().manual_seed(PROBE_SEED)
    with torch.no_grad():
        for p in probe.parameters():
            if p.ndim < 2:
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * PROBE_STD)
    return probe


def run_cell(activation: str, norm: str, steps: int, data: CheckData, ffn: str = "dense") -> dict:
    """Train one cell as the harness does (AdamW with its param groups, warmup + cosine, global grad
    clip) in a plain loop, single-threaded; returns its record (never raises for a model error)."""
    # the harness's own pieces (imported here: bench.module imports Lightning, which `bench --help` need not)
    from .module import cosine_with_warmup, lm_loss, param_groups, split_batch

    from models.moe import moe_layers, weighted_router_loss

    cfg = cell_config(activation, norm, steps, ffn)
    counts = count_params(cfg.model)
    rec: dict = {"params": {"total": counts.total, "non_embedding": counts.non_embedding,
                            "intermediate_size": counts.intermediate_size},
                 "config_hash": cfg.config_hash()}
    try:
        torch.manual_seed(cfg.seed)
        model = Transformer(cfg.model)
        rec["params"]["built"] = sum(p.numel() for p in model.parameters())
        t = cfg.train
        opt = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.lr, betas=tuple(t.betas), eps=t.eps)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: cosine_with_warmup(s, t.warmup_steps, t.max_steps, t.min_lr_ratio))
        B, wanted = data.batch_size, set(logged_steps(steps))
        layers = moe_layers(model)
        x, y = split_batch(data.train[:B])
        probe = perturbed(model)  # before any update: its loss and gradient are pure math, as at init
        loss = lm_loss(probe(x), y)  # recorded: the LM loss; trained: + the router losses of an MoE
        (loss + weighted_router_loss(moe_layers(probe), cfg.model)[0]).backward()
        losses = {"init": None, "perturbed": _value(loss)}
        grads = {"init": None, "perturbed": _value(torch.nn.utils.clip_grad_norm_(probe.parameters(), math.inf))}
        del probe
        for step in range(steps):
            x, y = split_batch(data.train[step * B:(step + 1) * B])
            loss = lm_loss(model(x), y)
            (loss + weighted_router_loss(layers, cfg.model)[0]).backward()
            key = "init" if step == 0 else f"step{step}" if step in wanted else "final" if step == steps - 1 else None
            if key:  # step 0's forward and backward are the model at init: pure math, no update yet
                losses[key] = _value(loss)
                grads[key] = _value(torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf))  # before clipping
            if t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        model.eval()
        with torch.no_grad():
            x, y = split_batch(data.val)
            losses["val"] = _value(lm_loss(model(x), y))
        rec.update(loss=losses, grad_norm=grads)
    except Exception as e:  # a broken model is a failed cell, reported with the others
        rec["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
    return rec


# ---- running the matrix ------------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(steps: int, data: CheckData) -> None:
    torch.set_num_threads(1)
    _WORKER.update(steps=steps, data=data)


def _work(cell: tuple[str, ...]) -> tuple[tuple[str, ...], dict]:
    return cell, run_cell(cell[0], cell[1], _WORKER["steps"], _WORKER["data"], *cell[2:])


def default_jobs() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def run_cells(cells: list[tuple[str, str]], steps: int, data: CheckData, jobs: int, show_progress: bool = True
              ) -> dict[str, dict]:
    """Every cell's record, keyed by cell name, in the order given. Each cell runs on one thread (the
    numbers do not depend on the thread count); ``jobs`` > 1 runs cells in forked worker processes,
    which inherit this process's modules as they are (monkeypatches included)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    results: dict[tuple[str, ...], dict] = {}
    jobs = max(1, min(jobs, len(cells)))
    if jobs > 1 and "fork" not in multiprocessing.get_all_start_methods():
        jobs = 1
    progress = Progress(TextColumn("checking"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.description}"), console=progress_console, transient=True,
                        disable=not show_progress)
    if jobs == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with progress:
                task = progress.add_task("", total=len(cells))
                for cell in cells:
                    results[cell] = run_cell(cell[0], cell[1], steps, data, *cell[2:])
                    progress.update(task, advance=1, description=cell_name(*cell))
        finally:
            torch.set_num_threads(threads)
    else:
        # the pool forks before the progress bar starts its refresh thread
        ctx = multiprocessing.get_context("fork")
        # slowest first (polynorm, powlu, sandwich), so no worker is left with a long tail
        order = sorted(cells, key=lambda c: (c[0] not in ("polynorm", "powlu"), c[1].split("+")[0] != "sandwich"))
        with ctx.Pool(jobs, initializer=_init_worker, initargs=(steps, data)) as pool, progress:
            task = progress.add_task("", total=len(cells))
            for cell, rec in pool.imap_unordered(_work, order, chunksize=1):
                results[cell] = rec
                progress.update(task, advance=1, description=cell_name(*cell))
    return {cell_name(*cell): results[cell] for cell in cells}


def environment() -> dict:
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "system": platform.system()}


# ---- comparing ---------------------------------------------------------------------------------

def tolerance(section: str, key: str, baseline: float) -> float:
    """The largest |now - baseline| that passes for one recorded number."""
    a, r = TOLERANCES[section]["untrained" if key in UNTRAINED else "trained"]
    return a + r * abs(baseline)


@dataclass
class Diff:
    """One compared quantity of one cell."""

    what: str
    baseline: object
    now: object
    ratio: float  # |now - baseline| / tolerance (inf for a mismatch that is not a loss)

    @property
    def failed(self) -> bool:
        return self.ratio > 1.0


@dataclass
class CellReport:
    name: str
    status: str  # ok, regression, new, missing, error
    diffs: list[Diff] = field(default_factory=list)
    note: str = ""

    @property
    def worst(self) -> Diff | None:
        return max(self.diffs, key=lambda d: d.ratio, default=None)


def compare_cell(name: str, now: dict | None, base: dict | None) -> CellReport:
    if base is None:
        return CellReport(name, "new", note="new, not in baseline")
    if now is None:
        return CellReport(name, "missing", note="in baseline, no longer in the registries")
    if "error" in now:
        return CellReport(name, "error", note=now["error"])
    diffs = []
    for key in ("total", "non_embedding", "intermediate_size"):
        b, n = base.get("params", {}).get(key), now["params"].get(key)
        diffs.append(Diff(f"params.{key}", b, n, 0.0 if b == n else math.inf))
    built = now["params"].get("built")
    if built is not None and built != now["params"]["total"]:
        diffs.append(Diff("params.built (model vs count_params)", now["params"]["total"], built, math.inf))
    for section in MEASURED:
        base_q, now_q = base.get(section, {}), now.get(section, {})
        for key in list(base_q) + [k for k in now_q if k not in base_q]:
            b, n = base_q.get(key), now_q.get(key)
            if b is None or n is None:
                ratio = 0.0 if b is None and n is None and key in base_q and key in now_q else math.inf
            else:
                ratio = abs(n - b) / tolerance(section, key, b)
            diffs.append(Diff(f"{section}.{key}", b, n, ratio))
    failed = any(d.failed for d in diffs)
    note = "resolved config changed" if base.get("config_hash") not in (None, now.get("config_hash")) else ""
    return CellReport(name, "regression" if failed else "ok", diffs, note)


def compare(results: dict[str, dict], baseline: dict, selected) -> list[CellReport]:
    """A report for every cell run, plus every selected baseline cell that no longer exists."""
    base_cells = baseline.get("cells", {})
    reports = [compare_cell(name, rec, base_cells.get(name)) for name, rec in results.items()]
    reports += [compare_cell(name, None, base_cells[name]) for name in base_cells
                if name not in results and selected(name)]
    return reports


def config_changes(baseline: dict, steps: int) -> list[str]:
    old, new = baseline.get("config", {}), reference_config(steps)
    return [f"{k}: {old.get(k, '(absent)')!r} -> {new.get(k, '(absent)')!r}"
            for k in sorted(old.keys() | new.keys()) if old.get(k, "(absent)") != new.get(k, "(absent)")]


# ---- output ------------------------------------------------------------------------------------

def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _fmt_diff(d: Diff) -> str:
    if isinstance(d.baseline, (int, float)) and isinstance(d.now, (int, float)):
        delta = d.now - d.baseline
        return f"{delta:+,}" if isinstance(delta, int) else f"{delta:+.2e}"
    return "-"


def _fmt_ratio(ratio: float) -> str:
    return "mismatch" if math.isinf(ratio) else f"{ratio:.2f}"


STATUS_STYLE = {"ok": "green", "regression": "bold red", "error": "bold red", "new": "yellow", "missing": "yellow"}


def render(reports: list[CellReport], verbose: bool) -> None:
    """One row per cell that is not ok (its largest deviation, and how many numbers are over tolerance);
    verbose: every cell, every number over tolerance, and each passing cell's closest call."""
    from rich.table import Table

    shown = [r for r in reports if verbose or r.status != "ok"]
    if not shown:
        return
    t = Table(title="bench check: " + ("every cell" if verbose else "regressions and new/missing cells")
              + "; x tol = |now - baseline| / tolerance (docs/check.md)", title_justify="left")
    for col in ("cell", "status", "quantity", "baseline", "now", "diff", "x tol", "over tol"):
        t.add_column(col, justify="left" if col in ("cell", "status", "quantity") else "right",
                     no_wrap=col in ("cell", "quantity"))
    for r in shown:
        style = STATUS_STYLE[r.status]
        status = f"[{style}]{r.status}[/]" + (f" ({r.note})" if r.note and r.diffs else "")
        if not r.diffs:  # new, missing, error
            t.add_row(r.name, status, r.note, "", "", "", "", "")
            continue
        failed = sorted((d for d in r.diffs if d.failed), key=lambda d: -d.ratio)
        if failed:
            rows = failed if verbose else failed[:1]
        else:  # the closest call among the measured numbers (the held-out loss when all are equal)
            rows = [max((d for d in r.diffs if not d.what.startswith("params")),
                        key=lambda d: (d.ratio, d.what == "loss.val"))]
        for i, d in enumerate(rows):
            first = i == 0
            t.add_row(r.name if first else "", status if first else "", d.what, _fmt(d.baseline), _fmt(d.now),
                      _fmt_diff(d), _fmt_ratio(d.ratio), f"{len(failed)} of {len(r.diffs)}" if first else "")
    console.print(t)


def summary(reports: list[CellReport], seconds: float, jobs: int) -> str:
    checked = [r for r in reports if r.status != "missing"]
    bad = [r for r in reports if r.status in ("regression", "error")]
    new = [r for r in reports if r.status == "new"]
    missing = [r for r in reports if r.status == "missing"]
    ratios = [(d.ratio, r.name, d.what) for r in reports for d in r.diffs
              if not d.what.startswith("params") and not math.isinf(d.ratio)]
    text = f"{len(checked)} cells checked, {len(bad)} regressions"
    if new:
        text += f", {len(new)} new (not in baseline)"
    if missing:
        text += f", {len(missing)} missing (in baseline only)"
    if ratios:
        ratio, name, what = max(ratios)
        if ratio > 1:
            text += f"; largest deviation {ratio:,.0f} x tolerance ({name} {what})"
        elif ratio > 0:
            text += f"; closest call {ratio:.2f} x tolerance ({name} {what})"
        else:
            text += "; every loss and gradient norm bitwise equal to the baseline"
    return text + f" ({seconds:.1f} s, {jobs} job{'s' if jobs != 1 else ''})"


# ---- baseline file -----------------------------------------------------------------------------

def read_baseline(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"baseline {path} is not valid JSON (line {e.lineno}): {e.msg}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("cells"), dict):
        raise ConfigError(f"baseline {path} is not a bench check baseline (format {FORMAT}); "
                          f"make one with `bench check --update --baseline {path}`")
    return data


def write_baseline(path: Path, steps: int, data: CheckData, cells: dict[str, dict]) -> None:
    order = {cell_name(*c): i for i, c in enumerate(all_cells() + moe_cells())}
    doc = {
        "format": FORMAT,
        "description": "bench check baseline: nano-scale losses and parameter counts of every activation x "
                       "scheme (+gpas). Regenerate with `bench check --update` after an intended change "
                       "(docs/check.md).",
        "settings": settings(steps),
        "tolerance": {"params": "exact", **{k: {c: {"abs": a, "rel": r} for c, (a, r) in v.items()}
                                             for k, v in TOLERANCES.items()}},
        "data": {"corpus": "bundled", "tokenizer": "bytes", "fingerprint": data.fingerprint},
        "environment": environment(),
        "config": reference_config(steps),
        "cells": {k: cells[k] for k in sorted(cells, key=lambda k: (order.get(k, len(order)), k))},
    }
    # one line per cell: a diff of the file shows which cells an update changed
    head = json.dumps({k: v for k, v in doc.items() if k != "cells"}, indent=1)
    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc["cells"].items())
    text = head[:-2] + ',\n "cells": {\n' + body + "\n }\n}\n"
    assert json.loads(text) == doc
    write_text(path, text)
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)  # write_text's temp file is private (0600); a committed file is not


# ---- the command -------------------------------------------------------------------------------

def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def cmd_check(args) -> int:
    activations = _names(args.activation)
    norms = _names(args.norm)
    ffns = _names(args.ffn)
    for f in ffns or []:
        check_choice("ffn", f, ["dense", "moe"])
    for a in activations or []:
        check_choice("activation", a, ACTIVATIONS)
    for n in norms or []:
        check_norm(n)
    if args.steps is not None and args.steps < 2:
        raise ConfigError(f"--steps must be at least 2, got {args.steps}")
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    plugin_cells = [cell_name(*c) for c in select_cells(activations, norms, None, True) if uses_plugin(*c[:2])]
    if plugin_cells and args.baseline is None and (activations or norms):
        raise ConfigError(f"{plugin_cells[0]} uses a plugin part: plugin cells are checked against your own "
                          f"baseline file, e.g. `bench check --baseline my-check.json --update` (docs/plugins.md)")
    path = Path(args.baseline) if args.baseline else BASELINE
    baseline = read_baseline(path)
    steps = args.steps if args.steps is not None else (baseline or {}).get("settings", {}).get("steps", DEFAULT_STEPS)
    filtered = bool(activations or norms or ffns)
    if baseline is None and not args.update:
        raise ConfigError(f"no baseline at {path}: make one with `bench check --update`")
    if baseline is not None and baseline.get("settings") != settings(steps):
        if not args.update:
            raise ConfigError(f"baseline {path} was made with other settings ({_settings_diff(baseline, steps)}); "
                              f"rerun with its settings or make a new one with `bench check --update`")
        if filtered:
            raise ConfigError(f"new settings ({_settings_diff(baseline, steps)}) need a full `bench check "
                              f"--update` (without --activation/--norm): every cell changes")

    cells = select_cells(activations, norms, baseline, args.baseline is not None, ffns)
    # the command line's order of names is the user's; the registries' order is the report's
    start = time.perf_counter()
    data = load_data(steps)
    results = run_cells(cells, steps, data, args.jobs, show_progress=not args.quiet)
    seconds = time.perf_counter() - start

    def selected(name: str) -> bool:
        a, n, f = parse_name(name)
        return (not activations or a in activations) and (not norms or n in norms) and (not ffns or f in ffns)

    if args.update:
        errors = {k: v["error"] for k, v in results.items() if "error" in v}
        if errors:
            name, err = next(iter(errors.items()))
            raise ConfigError(f"{len(errors)} cell(s) failed to train, baseline not written; first: {name}: {err}")
        kept = {k: v for k, v in (baseline or {}).get("cells", {}).items() if not selected(k)} if filtered else {}
        write_baseline(path, steps, data, {**kept, **results})
        old = (baseline or {}).get("cells", {})
        changed = sum(1 for k, v in results.items() if old.get(k) != v)
        console.print(f"wrote {path}: {len(kept) + len(results)} cells ({len(results)} run, {changed} changed"
                      f"{', ' + str(len(kept)) + ' kept' if kept else ''}) in {seconds:.1f} s")
        return 0

    reports = compare(results, baseline, selected)
    if baseline.get("data", {}).get("fingerprint") != data.fingerprint:
        console.print("[yellow]note:[/] the check's text differs from the baseline's (corpus, split or "
                      "tokenizer changed): every loss moves")
    changes = config_changes(baseline, steps)
    if changes and any(r.status == "regression" for r in reports):
        console.print("[yellow]note:[/] the resolved nano config differs from the baseline's: " + "; ".join(changes))
    if baseline.get("environment", {}).get("torch") != torch.__version__:
        console.print(f"[yellow]note:[/] baseline made with torch {baseline.get('environment', {}).get('torch')}, "
                      f"this is {torch.__version__}")
    render(reports, args.verbose)
    bad = [r for r in reports if r.status != "ok"]
    line = summary(reports, seconds, min(args.jobs, len(cells)))
    if bad:
        console.print(f"[bold red]FAIL[/] {line}", highlight=False)
        console.print("failing: " + ", ".join(f"{r.name} ({r.status})" for r in bad), highlight=False)
        if any(r.status in ("new", "missing") for r in bad) and not any(r.status in ("regression", "error")
                                                                       for r in bad):
            console.print("after an intended change: `bench check --update` rewrites the baseline", highlight=False)
        return 1
    console.print(f"[bold green]PASS[/] {line}", highlight=False)
    return 0


def _settings_diff(baseline: dict, steps: int) -> str:
    old, new = baseline.get("settings") or {}, settings(steps)
    parts = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(old.keys() | new.keys())
             if old.get(k) != new.get(k)]
    return ", ".join(parts) or "unknown"


def add_check_parser(sub) -> argparse.ArgumentParser:
    """The `check` subcommand on the CLI's subparsers."""
    p = sub.add_parser(
        "check", help="CI regression check: every activation x scheme at nano scale vs the committed baseline",
        description="Train every activation x scheme (with and without GPAS) at the nano scale on CPU for a few "
                    "dozen steps on fixed text, single-threaded and seeded, and compare parameter counts (exactly) "
                    "and losses (within tolerance) with the baseline. Exit 0 on pass, 1 on any regression, new "
                    "or missing cell. See docs/check.md.")
    p.add_argument("--baseline", metavar="FILE", default=None,
                   help="baseline JSON file to compare with (or write, with --update) "
                        "[default: configs/baselines/check-nano.json in the repository]")
    p.add_argument("--update", action="store_true",
                   help="rewrite the baseline with this run's numbers (atomically) and exit 0; with "
                        "--activation/--norm only those cells are replaced, the rest kept")
    p.add_argument("--activation", help="comma-separated activations to check [default: all of models.ACTIVATIONS]")
    p.add_argument("--norm", help="comma-separated schemes, '+gpas' to add GPAS (e.g. pre,pre+gpas) "
                                  "[default: every scheme with and without GPAS]")
    p.add_argument("--ffn", help="comma-separated FFN kinds to check: dense (every activation x scheme at nano), "
                                 f"moe ({', '.join(MOE_ACTIVATIONS)} x {', '.join(MOE_NORMS)} at {MOE_SCALE}) "
                                 "[default: both]")
    p.add_argument("--steps", type=int, default=None,
                   help=f"training steps per cell; must match the baseline's unless --update "
                        f"[default: the baseline's, else {DEFAULT_STEPS}]")
    p.add_argument("--jobs", type=int, default=default_jobs(),
                   help="worker processes, one thread each (the numbers do not depend on it) "
                        "[default: the usable CPU cores, at most 8; here %(default)s]")
    p.add_argument("--verbose", action="store_true", help="show every cell, not only regressions and new/missing ones")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_check)
    return p
