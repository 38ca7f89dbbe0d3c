"""`bench check` from its options to its exit code: validate, run the cells, then write the baseline
(--update, --calibrate) or compare with it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from models import ACTIVATIONS, check_choice

from ....console import out as console
from ....errors import ConfigError
from ...config.presets import check_norm
from .baseline import read_baseline, write_baseline
from .cells import BASELINE, DEFAULT_STEPS, parse_name, select_cells, settings, uses_plugin, cell_name
from .compare import compare, config_changes
from .report import render, summary
from .train import load_data, run_cells


@dataclass
class CheckOptions:
    activations: list[str] | None = None
    norms: list[str] | None = None
    ffns: list[str] | None = None
    baseline: str | None = None  # a user's file; None: the committed one
    update: bool = False
    calibrate: bool = False  # derive the tolerances (calibrate.py) and write them with the baseline
    untrained: bool = False  # only the pure-math numbers: parameter counts, init and perturbed init
    steps: int | None = None
    jobs: int = 1
    verbose: bool = False
    quiet: bool = False

    @property
    def filtered(self) -> bool:
        return bool(self.activations or self.norms or self.ffns)

    def selected(self, name: str) -> bool:
        a, n, f = parse_name(name)
        return ((not self.activations or a in self.activations) and (not self.norms or n in self.norms)
                and (not self.ffns or f in self.ffns))


def validate(opts: CheckOptions) -> None:
    for f in opts.ffns or []:
        check_choice("ffn", f, ["dense", "moe"])
    for a in opts.activations or []:
        check_choice("activation", a, ACTIVATIONS)
    for n in opts.norms or []:
        check_norm(n)
    if opts.steps is not None and opts.steps < 2:
        raise ConfigError(f"--steps must be at least 2, got {opts.steps}")
    if opts.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {opts.jobs}")
    if opts.untrained and (opts.update or opts.calibrate):
        raise ConfigError("--untrained compares the untrained numbers only; --update and --calibrate need them all")
    if opts.calibrate and opts.filtered:
        raise ConfigError("--calibrate derives the tolerances from every cell: drop --activation/--norm/--ffn")
    plugin_cells = [cell_name(*c) for c in select_cells(opts.activations, opts.norms, None, True)
                    if uses_plugin(*c[:2])]
    if plugin_cells and opts.baseline is None and (opts.activations or opts.norms):
        raise ConfigError(f"{plugin_cells[0]} uses a plugin part: plugin cells are checked against your own "
                          f"baseline file, e.g. `bench check --baseline my-check.json --update` (docs/plugins.md)")


def _settings_diff(baseline: dict, steps: int) -> str:
    old, new = baseline.get("settings") or {}, settings(steps)
    parts = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(old.keys() | new.keys())
             if old.get(k) != new.get(k)]
    return ", ".join(parts) or "unknown"


def _steps(opts: CheckOptions, path: Path, baseline: dict | None) -> int:
    """The steps to train, and a refusal when the baseline cannot be compared or updated with them."""
    steps = opts.steps if opts.steps is not None else (baseline or {}).get("settings", {}).get("steps", DEFAULT_STEPS)
    writes = opts.update or opts.calibrate
    if baseline is None and not opts.update:
        raise ConfigError(f"no baseline at {path}: make one with `bench check --update`")
    if baseline is not None and baseline.get("settings") != settings(steps):
        if not writes:
            raise ConfigError(f"baseline {path} was made with other settings ({_settings_diff(baseline, steps)}); "
                              f"rerun with its settings or make a new one with `bench check --update`")
        if opts.filtered:
            raise ConfigError(f"new settings ({_settings_diff(baseline, steps)}) need a full `bench check "
                              f"--update` (without --activation/--norm): every cell changes")
    return steps


def run_check(opts: CheckOptions) -> int:
    validate(opts)
    path = Path(opts.baseline) if opts.baseline else BASELINE
    baseline = read_baseline(path)
    steps = _steps(opts, path, baseline)
    cells = select_cells(opts.activations, opts.norms, baseline, opts.baseline is not None, opts.ffns)
    start = time.perf_counter()
    data = load_data(steps)
    results = run_cells(cells, steps, data, opts.jobs, show_progress=not opts.quiet, untrained=opts.untrained)
    seconds = time.perf_counter() - start
    if opts.update or opts.calibrate:
        return update(opts, path, baseline, steps, data, results, seconds)
    return report(opts, baseline, steps, data, results, seconds, min(opts.jobs, len(cells)))


def update(opts: CheckOptions, path: Path, baseline: dict | None, steps: int, data, results: dict,
           seconds: float) -> int:
    errors = {k: v["error"] for k, v in results.items() if "error" in v}
    if errors:
        name, err = next(iter(errors.items()))
        raise ConfigError(f"{len(errors)} cell(s) failed to train, baseline not written; first: {name}: {err}")
    old = (baseline or {}).get("cells", {})
    kept = {k: v for k, v in old.items() if not opts.selected(k)} if opts.filtered else {}
    cells = {**kept, **results} if opts.update else old  # --calibrate alone: the cells stay as committed
    tolerance = (baseline or {}).get("tolerance")
    if opts.calibrate:
        from .calibrate import calibrate

        tolerance = calibrate(cells, results, steps, opts, console)
    write_baseline(path, steps, data, cells, tolerance)
    changed = sum(1 for k, v in results.items() if old.get(k) != v)
    console.print(f"wrote {path}: {len(kept) + len(results)} cells ({len(results)} run, {changed} changed"
                  f"{', ' + str(len(kept)) + ' kept' if kept else ''}) in {seconds:.1f} s")
    return 0


def _notes(baseline: dict, steps: int, data, reports) -> None:
    if baseline.get("data", {}).get("fingerprint") != data.fingerprint:
        console.print("[yellow]note:[/] the check's text differs from the baseline's (corpus, split or "
                      "tokenizer changed): every loss moves")
    changes = config_changes(baseline, steps)
    if changes and any(r.status == "regression" for r in reports):
        console.print("[yellow]note:[/] the resolved nano config differs from the baseline's: " + "; ".join(changes))
    if baseline.get("environment", {}).get("torch") != torch.__version__:
        console.print(f"[yellow]note:[/] baseline made with torch {baseline.get('environment', {}).get('torch')}, "
                      f"this is {torch.__version__}")


def report(opts: CheckOptions, baseline: dict, steps: int, data, results: dict, seconds: float, jobs: int) -> int:
    reports = compare(results, baseline, opts.selected, opts.untrained)
    _notes(baseline, steps, data, reports)
    render(reports, opts.verbose)
    bad = [r for r in reports if r.status != "ok"]
    line = summary(reports, seconds, jobs, opts.untrained)
    if bad:
        console.print(f"[bold red]FAIL[/] {line}", highlight=False)
        console.print("failing: " + ", ".join(f"{r.name} ({r.status})" for r in bad), highlight=False)
        if any(r.status in ("new", "missing") for r in bad) and not any(r.status in ("regression", "error")
                                                                       for r in bad):
            console.print("after an intended change: `bench check --update` rewrites the baseline", highlight=False)
        return 1
    console.print(f"[bold green]PASS[/] {line}", highlight=False)
    return 0
