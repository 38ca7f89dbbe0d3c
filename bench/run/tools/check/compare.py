"""Comparing a check's numbers with the baseline's: parameter counts exactly, every loss and
gradient norm within its tolerance. The tolerances are the baseline's own (derived by
``bench check --calibrate`` from the spread across emulated environments, calibrate.py); a baseline
without them is compared with DEFAULT_TOLERANCES."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .cells import MEASURED, UNTRAINED, reference_config

# A number passes when |now - baseline| <= abs + rel * |baseline|. The floor of every derived
# tolerance, and the untrained numbers' tolerance: one forward and backward is pure math, its spread
# across CPU instruction sets is about one rounding step (docs/check.md).
DEFAULT_TOLERANCES = {
    "loss": {"untrained": (2e-5, 2e-5), "trained": (2e-4, 5e-5)},
    "grad_norm": {"untrained": (1e-5, 1e-4), "trained": (5e-4, 5e-4)},
}


def tolerance(section: str, key: str, baseline: float, tolerances: dict | None = None) -> float:
    """The largest |now - baseline| that passes for one recorded number: the baseline's tolerance for
    this quantity when it has one, else the default of its kind."""
    own = ((tolerances or {}).get(section) or {}).get(key)
    if isinstance(own, dict):
        a, r = own["abs"], own["rel"]
    else:
        a, r = DEFAULT_TOLERANCES[section]["untrained" if key in UNTRAINED else "trained"]
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


def _param_diffs(base: dict, now: dict) -> list[Diff]:
    diffs = []
    for key in ("total", "non_embedding", "intermediate_size"):
        b, n = base.get("params", {}).get(key), now["params"].get(key)
        diffs.append(Diff(f"params.{key}", b, n, 0.0 if b == n else math.inf))
    built = now["params"].get("built")
    if built is not None and built != now["params"]["total"]:
        diffs.append(Diff("params.built (model vs count_params)", now["params"]["total"], built, math.inf))
    return diffs


def _measured_diffs(base: dict, now: dict, tolerances: dict | None, keys: tuple | None) -> list[Diff]:
    diffs = []
    for section in MEASURED:
        base_q, now_q = base.get(section, {}), now.get(section, {})
        for key in list(base_q) + [k for k in now_q if k not in base_q]:
            if keys is not None and key not in keys:
                continue
            b, n = base_q.get(key), now_q.get(key)
            if b is None or n is None:
                ratio = 0.0 if b is None and n is None and key in base_q and key in now_q else math.inf
            else:
                ratio = abs(n - b) / tolerance(section, key, b, tolerances)
            diffs.append(Diff(f"{section}.{key}", b, n, ratio))
    return diffs


def compare_cell(name: str, now: dict | None, base: dict | None, tolerances: dict | None = None,
                 keys: tuple | None = None) -> CellReport:
    """One cell's report; ``keys`` limits the measured numbers compared (the untrained ones)."""
    if base is None:
        return CellReport(name, "new", note="new, not in baseline")
    if now is None:
        return CellReport(name, "missing", note="in baseline, no longer in the registries")
    if "error" in now:
        return CellReport(name, "error", note=now["error"])
    diffs = _param_diffs(base, now) + _measured_diffs(base, now, tolerances, keys)
    failed = any(d.failed for d in diffs)
    note = "resolved config changed" if base.get("config_hash") not in (None, now.get("config_hash")) else ""
    return CellReport(name, "regression" if failed else "ok", diffs, note)


def compare(results: dict[str, dict], baseline: dict, selected, untrained: bool = False) -> list[CellReport]:
    """A report for every cell run, plus every selected baseline cell that no longer exists."""
    base_cells, tolerances = baseline.get("cells", {}), baseline.get("tolerance")
    keys = UNTRAINED if untrained else None
    reports = [compare_cell(name, rec, base_cells.get(name), tolerances, keys) for name, rec in results.items()]
    reports += [compare_cell(name, None, base_cells[name]) for name in base_cells
                if name not in results and selected(name)]
    return reports


def config_changes(baseline: dict, steps: int) -> list[str]:
    old, new = baseline.get("config", {}), reference_config(steps)
    return [f"{k}: {old.get(k, '(absent)')!r} -> {new.get(k, '(absent)')!r}"
            for k in sorted(old.keys() | new.keys()) if old.get(k, "(absent)") != new.get(k, "(absent)")]
