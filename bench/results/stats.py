"""Statistics over run records, one module per concern; this module gathers their names so
``from bench.results.stats import ...`` keeps working:

- summary: final loss / PPL of a cell, mean over seeds with a Student-t CI;
- grouping: seed repeats, the order of rows / columns / scales, the baseline group;
- curves: metrics.csv parsed, read, merged after a resume, time-to-target;
- scaling: power-law fits across scales;
- frontier: the cost / quality Pareto front.

Significance against a baseline lives in ``bench.results.paired``; the equal steps / FLOPs / time
views in ``bench.results.views``."""

from __future__ import annotations

from .curves import (TIME_COLUMN, TimeToTarget, cumulative, load_curves, merge_curves, parse_curve, read_curve,
                     steps_done, time_to_target, tokens_per_step)
from .frontier import frontier_points, pareto_front, shared_machine
from .grouping import (axis_order, baseline_groups, cell_order, group_records, parse_baseline, row_labels,
                       run_order)
from .scaling import (POWER_LAW, SATURATING, ScalingFit, fit_power_law, fit_saturating, scaling_fits,
                      scaling_points)
from .summary import ALPHA, CONFIDENCE, Summary, final_val_loss, final_val_ppl, summarize

__all__ = ["TIME_COLUMN", "TimeToTarget", "cumulative", "load_curves", "merge_curves", "parse_curve", "read_curve",
           "steps_done", "time_to_target", "tokens_per_step", "frontier_points", "pareto_front", "shared_machine",
           "axis_order", "baseline_groups", "cell_order", "group_records", "parse_baseline", "row_labels",
           "run_order", "POWER_LAW", "SATURATING", "ScalingFit", "fit_power_law", "fit_saturating", "scaling_fits",
           "scaling_points", "ALPHA", "CONFIDENCE", "Summary", "final_val_loss", "final_val_ppl", "summarize"]
