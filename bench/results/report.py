"""`bench report`: one self-contained HTML page per matrix (tables, figures as embedded PNGs, probes,
scaling laws, provenance), readable offline: no external CSS, JS, fonts or images.

The page is the Jinja2 template templates/report.html.j2 (package data, autoescaped), given the title,
the cell counts and a list of ``Section``s. A section is data: a title, an anchor and its blocks
(``tables.Table``s and the ``Heading``, ``Note``, ``Plot``, ``Code`` and ``Details`` below), which
templates/blocks.html.j2 renders; no HTML is built here. ``sections`` builds the list, so a new
section is one more entry there. The leaderboard's tables are built once and serve the leaderboard,
views and learning-rate sections."""

from __future__ import annotations

import datetime as dt
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..errors import ConfigError
from .curves import load_curves
from .figures import compare as F
from .figures.cells import (fig_expert_load, fig_frontier, fig_loss_curves, fig_outliers, fig_probe_dynamics,
                            fig_probe_structure, fig_routing_lines, outlier_records, outliers, precision_of)
from .figures.compare import fig_laws
from .paper_claims import claims_table, stored_verdicts
from .design import read_design
from .records import Record, load_records, write_text
from .render import environment
from .stats.costs import cost_note
from .stats.laws import fit_laws, ladder_records, law_points, law_records
from .tables import Column, Table, fmt
from .tables.comparisons import law_tables
from .tables.leaderboard import Leaderboard, build_leaderboard

TEMPLATE = "report.html.j2"


# ---- blocks: what a section holds ----------------------------------------------------------------

@dataclass(frozen=True)
class Heading:
    text: str
    block: ClassVar[str] = "heading"


@dataclass(frozen=True)
class Note:
    """A paragraph; ``kind`` is its CSS class: 'note', 'legend' or 'note warn'."""

    text: str
    kind: str = "note"
    block: ClassVar[str] = "note"


@dataclass(frozen=True)
class Plot:
    """A figure as a base64 PNG; without one, why: ``error`` (it failed to draw) or nothing to plot."""

    alt: str
    png: str | None
    error: str | None = None
    block: ClassVar[str] = "figure"


@dataclass(frozen=True)
class Code:
    text: str
    block: ClassVar[str] = "code"


@dataclass(frozen=True)
class Details:
    """A collapsible block (closed): keeps a 100-cell page short."""

    summary: str
    blocks: list
    block: ClassVar[str] = "details"


@dataclass
class Section:
    """One section of the report: its heading, the heading's id (a link target: report.html#anchor)
    and its blocks."""

    title: str
    anchor: str
    blocks: list = field(default_factory=list)

    def __post_init__(self):
        self.blocks = [b for b in self.blocks if b is not None]  # a table with nothing to show is None


def figure(alt: str, fn, *args) -> Plot:
    """``fn(*args)`` as a figure; one that fails to draw must not lose the rest of the report."""
    try:
        return Plot(alt, fn(*args))
    except Exception as exc:  # noqa: BLE001
        return Plot(alt, None, f"{type(exc).__name__}: {exc}")


def template():
    """The page template, read from the package (a wheel carries it as package data)."""
    return environment().get_template(TEMPLATE)


# ---- sections ------------------------------------------------------------------------------------

def leaderboard_section(board: Leaderboard) -> Section:
    return Section("Leaderboard", "leaderboard", [*board.pivots, board.paired, board.seeds, board.cells])


def curves_section(records, curves: dict) -> Section:
    return Section("Training curves", "curves", [
        Note("One line per cell (every seed); color = activation, linestyle = norm; x = tokens seen."),
        figure("training and validation loss curves", fig_loss_curves, records, curves)])


def views_section(board: Leaderboard) -> Section:
    """Each group's rank at equal steps, FLOPs and time, where they disagree, and one table per view."""
    title = "Equal steps, equal compute, equal time"
    if not board.views:
        return Section(title, "views", [Note("No validation curves (metrics.csv) beside the records: no views.")])
    return Section(title, "views", [board.ranks, figure("rank of each group in each view", F.fig_ranks,
                                                        board.disagreements), *board.views.values()])


def lr_section(board: Leaderboard) -> Section | None:
    if board.lr is None:
        return None
    return Section(board.lr.title, "lr", [board.lr, figure("final validation loss against learning rate", F.fig_lr,
                                                           board.lr_curves), board.grid])


def comparisons_section(records, curves: dict) -> Section:
    """The figures that compare cells (mean over seeds)."""
    blocks: list = [Note("Seed repeats are averaged. Per-cell probe figures are further down, collapsed.")]
    empty = []
    for title, fn, args in (
            ("Validation loss with seed bands", F.fig_loss_bands, (records, curves)),
            ("Per-layer activation variance at the end of training, by scheme (GPAS Fig. 1/5)",
             F.fig_act_var_by_scheme, (records,)),
            ("GPAS gate trajectories by scheme", F.fig_gpas_gates, (records,)),
            ("Effective rank per FFN matrix, by activation (PolyCom Fig. 6)", F.fig_effective_rank, (records,)),
            ("Layer cosine similarity, side by side (PolyCom Fig. 7)", F.fig_layer_cosine, (records,))):
        drawn = figure(title, fn, *args)
        if drawn.png is None and drawn.error is None:
            empty.append(title)
        else:
            blocks += [Heading(title), drawn]
    if empty:
        blocks.append(Note("Nothing to plot (no probes or curves in these records) for: " + "; ".join(empty) + "."))
    return Section("Comparisons across cells", "comparisons", blocks)


def frontier_section(records) -> Section:
    front: list = []

    def frontier():
        b64, front[:] = fig_frontier(records)
        return b64

    blocks: list = [figure("validation PPL against tokens/s", frontier)]
    if (n := cost_note(records)):
        blocks.append(Note(n, "note warn"))
    if front:
        blocks.append(Note("On the Pareto front (no other group is both faster and better): " + "; ".join(
            f"{p['row']} / {p['norm']} ({p['scale']}): {fmt(p['ppl'], '.3f')} PPL at {fmt(p['tps'], ',.0f')} tok/s"
            + (" (measured on a shared machine)" if p["shared"] else "") for p in front)))
    return Section("Cost / quality frontier", "frontier", blocks)


def laws_section(records: list[Record]) -> Section | None:
    """The scaling laws of a ladder's rungs, or of a matrix's scales (None when there is neither)."""
    recs = law_records(records)
    if not recs:
        return None
    laws = fit_laws(recs)
    title = "Scaling laws (scale ladder)" if ladder_records(records) else "Scaling laws (across scales)"
    return Section(title, "scaling-laws", [
        *law_tables(laws),
        figure("final validation loss against parameters, fitted laws", fig_laws, laws, law_points(recs))])


def downstream_section(board: Leaderboard) -> Section | None:
    return Section("Downstream accuracy", "downstream", [board.downstream]) if board.downstream else None


PRECISION_NOTE = (
    "Measured on the fixed probe batch under each cell's own precision, every train.probe_every steps. e4m3_over: "
    "fraction with |a| > 448 (an unscaled fp8 e4m3 cast would saturate); e4m3_under: fraction of nonzero values "
    "below e4m3's smallest normal 2^-6 after tensorwise scaling by 448 / max|a| (what one outlier costs the rest of "
    "the tensor under fp8); bf16_under: fraction below bf16's smallest normal 2^-126. Values are the worst layer at "
    "the last sample. Grey line: 448, e4m3's max finite value. See docs/precision.md.")
OUTLIER_STATS = ("max_abs", "kurtosis", "e4m3_over", "e4m3_under", "bf16_under")


def _worst_last(r: Record, site: str, stat: str):
    """The largest value over layers at the last sample (None when not sampled)."""
    last = (((outliers(r)["sites"].get(site) or {}).get(stat)) or [[]])[-1]
    return max(last) if last else None


OUTLIER_COLUMNS = (
    Column("cell", get=lambda r: r.id, align="left"), Column("activation", align="left"),
    Column("norm", align="left"), Column("precision", get=precision_of, align="left"),
    Column("fp8_recipe", get=lambda r: r.extra.get("fp8_recipe"), align="left"),
    Column("status", align="left"), Column("step", get=lambda r: outliers(r)["steps"][-1]),
    Column("loss_spikes", get=lambda r: (r.probes or {}).get("loss_spikes")),
    *(Column(f"{site}.{stat}", get=lambda r, site=site, stat=stat: _worst_last(r, site, stat), fmt=".3g")
      for site in ("ffn_hidden", "resid") for stat in OUTLIER_STATS),
)


def precision_section(records: list[Record]) -> Section | None:
    """Outliers under precision: the picture that tests PowLU's claim (bounded activations survive low
    precision), a figure and the worst layer per cell at the last sample."""
    recs = outlier_records(records)
    if not recs:
        return None
    return Section("Outliers under precision", "precision", [
        Note(PRECISION_NOTE), figure("outliers by activation x precision", fig_outliers, records),
        Table("Worst layer at the last sample", OUTLIER_COLUMNS, recs)])


def _probe_blocks(r: Record) -> list:
    pr = r.probes
    facts = []
    if pr.get("loss_spikes") is not None:
        spikes = pr.get("spike_steps") or []
        steps = ", ".join(map(str, spikes[:20])) + (" ..." if len(spikes) > 20 else "")
        facts.append(f"loss spikes: {pr['loss_spikes']}" + (f" (steps {steps})" if spikes else ""))
    if pr.get("every") is not None:
        facts.append(f"probed every {pr['every']} steps")
    if isinstance(pr.get("base_loss"), (int, float)):
        facts.append(f"base loss {fmt(pr['base_loss'], '.4f')}")
    if isinstance(pr.get("overhead_seconds"), (int, float)):
        facts.append(f"probe overhead {fmt(pr['overhead_seconds'], '.2f')} s")
    return [Heading(r.id), *([Note("; ".join(facts))] if facts else []),
            *(figure(f"{r.id} probes: {name}", fn, pr)
              for name, fn in (("per-layer dynamics", fig_probe_dynamics), ("structure", fig_probe_structure)))]


def probes_section(records) -> Section | None:
    probed = [r for r in records if isinstance(r.probes, dict)]
    if not probed:
        return None
    return Section("Probes per cell", "probes", [
        Note("Collapsed: click a cell to open its figures. Per-layer lines go from the first (dark) to the last "
             "(yellow) layer."), *(Details(f"{r.id} ({r.status})", _probe_blocks(r)) for r in probed)])


MAX_SPREAD = 16  # a list of up to this many numbers gets a column per entry; a longer one is summarized


def scalars(value, name: str) -> dict:
    """A probe's result as {column: scalar}: nested keys joined with '.', a short list of numbers as one
    column per entry (name[i], name[i][j]), a longer one as its count and range."""
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in scalars(sub, f"{name}.{key}" if name else key).items()}
    if isinstance(value, (list, tuple)):
        flat = _numbers(value)
        if flat is not None and len(flat) > MAX_SPREAD:
            return {name: f"{len(flat)} values, {fmt(min(flat), '.4g')} to {fmt(max(flat), '.4g')}"}
        if flat is None and len(value) > MAX_SPREAD:
            return {name: f"{len(value)} values"}
        return {k: v for i, sub in enumerate(value) for k, v in scalars(sub, f"{name}[{i}]").items()}
    return {name: value if value is None or isinstance(value, (bool, int, float, str)) else str(value)}


def _numbers(value) -> list[float] | None:
    """Every number in a (nested) list, or None when it holds anything else."""
    out = []
    for v in value:
        if isinstance(v, (list, tuple)):
            sub = _numbers(v)
            if sub is None:
                return None
            out += sub
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
        else:
            return None
    return out


def registered_probes_section(records: list[Record]) -> Section | None:
    """Every registered probe's results (``record.extra_probes``: plugins' probes included), a table per
    probe of its scalar results per cell."""
    names = list(dict.fromkeys(n for r in records for n in (r.extra_probes or {})))
    if not names:
        return None
    blocks: list = [Note("What each registered probe (bench.register_probe) returned at the end of a cell, as "
                         f"recorded in record['extra_probes']; lists of up to {MAX_SPREAD} numbers are spread over "
                         "one column per entry, longer ones given as their count and range.")]
    for name in names:
        rows = [(r, scalars(result, "")) for r in records if isinstance(result := (r.extra_probes or {}).get(name),
                                                                         dict)]
        keys = list(dict.fromkeys(k for _, vals in rows for k in vals))
        columns = [Column("cell", get=lambda x: x[0].id, align="left"),
                   *(Column(k or "result", get=lambda x, k=k: x[1].get(k)) for k in keys)]
        blocks.append(Table(name, columns, rows))
    return Section("Registered probes", "registered-probes", blocks)


MOE_NOTE = ("Sampled every train.probe_every steps from the last training micro-batch before the step. Heatmaps: the "
            "fraction of the T·k routing assignments each expert received, per layer (blue below, red above the "
            "uniform 1/E). Load max/mean is 1 for a balanced router. Effective rank in the probes is the mean over a "
            "layer's experts; FFN max |a| and kurtosis pool all its experts (docs/moe.md).")


def _moe_summary(rec: Record) -> str:
    import numpy as np

    moe = rec.moe
    m = rec.config.get("model", {})
    facts = [f"{m.get('moe_experts')} experts, top-{m.get('moe_top_k')}, "
             f"{m.get('moe_shared_experts', 0)} shared, softmax {m.get('moe_softmax')} top-k",
             f"capacity factor {moe.get('capacity_factor')}" if moe.get("capacity_factor") is not None
             else "dropless"]
    p = rec.params
    if p is not None and p.active:
        facts.append(f"{fmt(p.active, ',')} active of {fmt(p.total, ',')} parameters")
    last = {k: moe[k][-1] for k in ("load_max_over_mean", "router_entropy", "lb_loss", "z_loss", "dropped_fraction")
            if moe.get(k)}
    if last:
        import math

        step = moe["steps"][-1]
        facts.append(f"at step {step}: load max/mean {max(last.get('load_max_over_mean', [0])):.2f} (worst layer), "
                     f"entropy {np.mean(last.get('router_entropy', [0])):.3f} nats (layer mean, uniform "
                     f"{math.log(m.get('moe_experts') or 1):.3f}), LB loss {np.mean(last.get('lb_loss', [0])):.3f}, "
                     f"z-loss {np.mean(last.get('z_loss', [0])):.3f}"
                     + (f", dropped {np.mean(last['dropped_fraction']):.2%}" if moe.get("capacity_factor") else ""))
    return "; ".join(facts)


def moe_section(records: list[Record]) -> Section | None:
    """Mixture-of-experts cells only: expert load per layer over training, load imbalance, router
    entropy and dropped tokens (record["moe"], bench/run/engine/probes/moe.py)."""
    cells = [r for r in records if r.moe and r.moe.get("steps")]
    if not cells:
        return None
    blocks: list = [Note(MOE_NOTE)]
    for r in cells:
        blocks += [Heading(r.id), Note(_moe_summary(r)),
                   figure(f"{r.id}: expert load per layer", fig_expert_load, r.moe),
                   figure(f"{r.id}: routing statistics", fig_routing_lines, r.moe)]
    return Section("Mixture of experts: routing", "moe", blocks)


def provenance_section(records: list[Record]) -> Section:
    envs = [r.environment for r in records]

    def common(get):
        vals = {repr(get(e)) for e in envs}
        return get(envs[0]) if len(vals) == 1 else None

    facts = []
    for name, get in (("device", lambda e: e.get("device")), ("platform", lambda e: e.get("platform")),
                      ("python", lambda e: e.get("python")), ("torch threads", lambda e: e.get("torch_threads")),
                      ("cuda", lambda e: e.get("cuda")),
                      ("git commit", lambda e: (e.get("git") or {}).get("commit")),
                      ("git dirty", lambda e: (e.get("git") or {}).get("dirty"))):
        v = common(get)
        facts.append((name, "varies per cell (see below)" if v is None and len({repr(get(e)) for e in envs}) > 1
                      else v))
    pk = common(lambda e: e.get("packages"))
    facts.append(("packages", ", ".join(f"{k} {v}" for k, v in pk.items()) if isinstance(pk, dict)
                  else "varies per cell (see below)"))

    def git(r):
        g = r.environment.get("git") or {}
        return (g.get("commit") or "-")[:12] + (" (dirty)" if g.get("dirty") else "")

    def packages(r):
        return ", ".join(f"{k} {v}" for k, v in (r.environment.get("packages") or {}).items()) if pk is None \
            else "as above"

    cells = (Column("id", align="left"), Column("config hash", get=lambda r: r.config_hash or None, align="left"),
             Column("status", align="left"), Column("git commit", get=git, align="left"),
             Column("device", get=lambda r: r.device or r.environment.get("device"), align="left"),
             Column("precision", align="left"), Column("started", align="left"),
             Column("wall s", get=lambda r: r.wall_seconds), Column("packages", get=packages, align="left"))
    blocks: list = [Table("", (Column("key", get=lambda x: x[0], align="left"),
                               Column("value", get=lambda x: x[1], align="left")), facts),
                    Table("", cells, records)]
    cmds = sorted({" ".join(map(str, r.command)) for r in records} - {""})
    if cmds:
        blocks += [Note("Command line(s):"), *(Code(c) for c in cmds)]
    return Section("Provenance", "provenance", blocks)


def claims_section(stored: list[dict]) -> Section | None:
    """Every version of the claims checked in this folder (claims/NAME-HASH.json), newest file text
    first as stored: a changed claims file's verdicts sit beside the old ones, never over them."""
    if not stored:
        return None
    blocks = []
    for d in stored:
        blocks.append(claims_table(d["verdicts"], str(d.get("name", "")), str(d.get("claims_hash", "")),
                                   str(d.get("paper", ""))))
        blocks.append(Details(f"claims file {d.get('name', '')} ({d.get('claims_hash', '')}) as judged",
                              [Code(str(d.get("claims_file", "")))]))
    return Section("Claims", "claims", blocks)


def sections(records: list[Record], curves: dict, baseline, target, at, margin=None, sequential=None,
             claims=()) -> list[Section]:
    """The page's sections in order; those with nothing to show are left out."""
    board = build_leaderboard(records, "", baseline, target, curves, at, margin, sequential)
    found = [claims_section(list(claims)), leaderboard_section(board), curves_section(records, curves),
             views_section(board), lr_section(board),
             comparisons_section(records, curves), frontier_section(records), laws_section(records),
             downstream_section(board), precision_section(records), probes_section(records),
             registered_probes_section(records), moe_section(records), provenance_section(records)]
    return [s for s in found if s is not None]


def render_html(records: list[Record], title: str, curves: dict | None = None, baseline=None,
                target: float | None = None, at=None, margin: float | None = None, sequential=None,
                claims=()) -> str:
    """The whole report as one HTML string (figures embedded as base64 PNG data URIs). ``at``:
    'flops=X' / 'seconds=Y' / 'steps=Z' sets that view's budget (default: the largest every cell reached).
    A malformed baseline or budget is a ConfigError, raised before anything is drawn."""
    status = Counter(r.status for r in records)
    return template().render(
        title=title, cells=len(records), statuses=", ".join(f"{v} {k}" for k, v in status.items()),
        generated=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        sections=sections(records, curves or {}, baseline, target, at, margin, sequential, claims))


# ---- files and the command ----------------------------------------------------------------------

def matrix_folders(folder: Path) -> list[Path]:
    """The matrix folders under ``folder`` (itself, if it holds cell folders directly)."""
    folder = Path(folder)
    return sorted({p.parent.parent for p in folder.glob("**/record.json")})


def write_report(folder: Path, out: Path | None = None, baseline=None, target: float | None = None,
                 warn=None, at=None, margin: float | None = None) -> list[Path]:
    """One report.html per matrix folder under ``folder`` (default: <matrix folder>/report.html);
    ``out`` names the file when there is exactly one matrix. Each record.json that cannot be used
    is named with the reason through ``warn`` (default: stderr)."""
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    mats = {}
    for m in matrix_folders(folder):
        recs, problems = load_records(m)
        for p in problems:
            warn(f"skipped record {p.path}: {p.reason}")
        if recs:
            mats[m] = recs
    if not mats:
        raise ConfigError(f"no finished cells under {folder} (run `bench run` first)")
    if out is not None and len(mats) > 1:
        raise ConfigError(f"--out names one file, but {folder} holds {len(mats)} matrices "
                          f"({', '.join(m.name for m in mats)}); leave --out out to write one report per matrix")
    written = []
    for m, records in mats.items():
        path = Path(out) if out is not None else m / "report.html"
        write_text(path, render_html(records, m.name, load_curves(m), baseline, target, at, margin, read_design(m),
                                     stored_verdicts(m)))
        written.append(path)
    return written
