"""`bench report`: one self-contained HTML page per matrix (tables, figures as embedded PNGs,
probes, scaling fits, provenance), readable offline: no external CSS, JS, fonts or images.

The page is the Jinja2 template templates/report.html.j2 (package data, autoescaped), given the
title, the cell counts and a list of sections (``html.Section``: title, anchor, body); ``sections``
builds that list, so a new section is one more entry there."""

from __future__ import annotations

import datetime as dt
import functools
import sys
from collections import Counter
from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from .html import Section, details, e as _e, figure_html as _figure_html, table as _table
from .leaderboard import (fmt_cell, fmt_value, legend, long_columns, long_rows, notes, pivot_cell, pivots,
                          resolve_at, resolve_baseline, warning_lines)
from .figures.cells import fig_frontier, fig_loss_curves, fig_probe_dynamics, fig_probe_structure, fig_scaling
from .records import Record, load_records, write_text
from .compare_tables import check_at
from .report_compare import figures_section, lr_section, paired_section, views_section
from .moe_report import moe_section
from .columns import cost_note
from .curves import load_curves
from .scaling import POWER_LAW, SATURATING, scaling_fits

TEMPLATE = "report.html.j2"


@functools.lru_cache(maxsize=1)
def template():
    """The page template, read from the package (a wheel carries it as package data)."""
    import jinja2

    text = resources.files("bench.results").joinpath("templates", TEMPLATE).read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    return env.from_string(text)


# ---- sections -----------------------------------------------------------------------------------

def _pivot_html(records, baseline) -> list[str]:
    parts = []
    for scale, p in pivots(records, baseline).items():
        rows = []
        for act in p["rows"]:
            cells = [act]
            for n in p["cols"]:
                comp = p["comparisons"].get((act, n))
                text = pivot_cell(p["cells"].get((act, n)), comp)
                klass = "" if comp is None else ("base" if comp.is_baseline else
                                                  {"better": "better", "worse": "worse"}.get(comp.verdict, ""))
                cells.append((text, klass))
            rows.append(cells)
        parts += [f"<h3>{_e(scale)}: final validation PPL (mean ± 95% CI over seeds)</h3>",
                  _table(["activation", *p["cols"]], rows), f'<p class="legend">{_e(legend(p, scale))}</p>']
    return parts


def leaderboard_section(records, curves: dict, baseline, target) -> Section:
    cols = long_columns(target, records)
    return Section.of("Leaderboard", "leaderboard", [
        *_pivot_html(records, baseline), *(f'<p class="note warn">{_e(w)}</p>' for w in warning_lines(records)),
        *paired_section(records, baseline), "<h3>All cells by validation PPL</h3>",
        _table(list(cols), [[fmt_cell(row, c) for c in cols] for row in long_rows(records, target, curves)]),
        *(f'<p class="note">{_e(n)}</p>' for n in notes(records, target))])


def curves_section(records, curves: dict) -> Section:
    return Section.of("Training curves", "curves", [
        '<p class="note">One line per cell (every seed); color = activation, linestyle = norm; x = tokens seen.</p>',
        _figure_html("training and validation loss curves", fig_loss_curves, records, curves)])


def frontier_section(records) -> Section:
    front = []

    def frontier():
        b64, front[:] = fig_frontier(records)
        return b64
    parts = [_figure_html("validation PPL against tokens/s", frontier)]
    if (n := cost_note(records)):
        parts.append(f'<p class="note warn">{_e(n)}</p>')
    if front:
        parts.append('<p class="note">On the Pareto front (no other group is both faster and better): ' + _e(
            "; ".join(f"{p['row']} / {p['norm']} ({p['scale']}): {p['ppl']:.3f} PPL at {p['tps']:,.0f} tok/s"
                      + (" (measured on a shared machine)" if p["shared"] else "") for p in front)) + "</p>")
    return Section.of("Cost / quality frontier", "frontier", parts)


def scaling_section(records) -> Section | None:
    """Fits across scales (None for a single scale)."""
    if len({r.scale for r in records}) <= 1:
        return None
    fits = scaling_fits(records)
    if not fits:
        return Section.of("Scaling", "scaling", [
            '<p class="note">No (activation, norm) group finished ok at two or more scales: no fit.</p>'])
    rows = [[f"{f.group[0]} / {f.group[1]}", f.x, f.form, f.n_points, f.n_scales,
             f"{f.alpha:.4f}" + (f" ± {f.alpha_se:.4f}" if f.alpha_se is not None else ""), f"{f.A:.4g}",
             "-" if f.E is None else f"{f.E:.4f}" + (f" ± {f.E_se:.4f}" if f.E_se is not None else ""),
             f.note or "-"] for f in fits]
    header = ["group", "x", "form", "points", "scales", "alpha ± SE", "A", "E ± SE", "note"]
    return Section.of("Scaling", "scaling", [
        _table(header, rows),
        f'<p class="legend">N = non-embedding parameters; C = 6 N D (D = training tokens). Every ok '
        f"seed is one point. With 4 or more scales the fitted form is {_e(SATURATING)} (nonlinear "
        f"least squares); with fewer it is the pure power law {_e(POWER_LAW)} (ordinary least "
        "squares on logs). SE: standard error from the fit's covariance matrix.</p>",
        _figure_html("scaling fits", fig_scaling, fits)])


def probes_section(records) -> Section | None:
    probed = [r for r in records if isinstance(r.probes, dict)]
    if not probed:
        return None
    parts = ['<p class="note">Collapsed: click a cell to open its figures. Per-layer lines go from the first '
             "(dark) to the last (yellow) layer.</p>"]
    for r in probed:
        parts += details(f"{r.id} ({r.status})", _probe_section(r))
    return Section.of("Probes per cell", "probes", parts)


def provenance_section(records: list[Record]) -> Section:
    envs = [r.environment for r in records]

    def common(get):
        vals = {repr(get(e)) for e in envs}
        return get(envs[0]) if len(vals) == 1 else None

    parts = []
    facts = []
    for name, get in (("device", lambda e: e.get("device")), ("platform", lambda e: e.get("platform")),
                      ("python", lambda e: e.get("python")), ("torch threads", lambda e: e.get("torch_threads")),
                      ("cuda", lambda e: e.get("cuda")),
                      ("git commit", lambda e: (e.get("git") or {}).get("commit")),
                      ("git dirty", lambda e: (e.get("git") or {}).get("dirty"))):
        v = common(get)
        facts.append([name, "varies per cell (see below)" if v is None and len({repr(get(e)) for e in envs}) > 1
                      else ("-" if v is None else v)])
    pk = common(lambda e: e.get("packages"))
    if isinstance(pk, dict):
        facts.append(["packages", ", ".join(f"{k} {v}" for k, v in pk.items())])
    else:
        facts.append(["packages", "varies per cell (see below)"])
    parts.append(_table(["key", "value"], facts))
    rows = []
    for r in records:
        e = r.environment
        git = e.get("git") or {}
        commit = (git.get("commit") or "-")[:12] + (" (dirty)" if git.get("dirty") else "")
        pkgs = ", ".join(f"{k} {v}" for k, v in (e.get("packages") or {}).items()) if pk is None else "as above"
        rows.append([r.id, r.config_hash or "-", r.status, commit, r.device or e.get("device", "-"),
                     r.precision or "-", r.started or "-", fmt_value(r.wall_seconds), pkgs])
    parts.append(_table(["id", "config hash", "status", "git commit", "device", "precision", "started",
                         "wall s", "packages"], rows))
    cmds = {" ".join(map(str, r.command)) for r in records} - {""}
    if cmds:
        parts.append('<p class="note">Command line(s):</p>' + "".join(
            f"<pre><code>{_e(c)}</code></pre>" for c in sorted(cmds)))
    return Section.of("Provenance", "provenance", parts)


def _probe_section(r: Record) -> list[str]:
    pr = r.probes
    parts = [f"<h3>{_e(r.id)}</h3>"]
    facts = []
    if pr.get("loss_spikes") is not None:
        spikes = pr.get("spike_steps") or []
        steps = ", ".join(map(str, spikes[:20])) + (" ..." if len(spikes) > 20 else "")
        facts.append(f"loss spikes: {pr['loss_spikes']}" + (f" (steps {steps})" if spikes else ""))
    if pr.get("every") is not None:
        facts.append(f"probed every {pr['every']} steps")
    if isinstance(pr.get("base_loss"), (int, float)):
        facts.append(f"base loss {pr['base_loss']:.4f}")
    if isinstance(pr.get("overhead_seconds"), (int, float)):
        facts.append(f"probe overhead {pr['overhead_seconds']:.2f} s")
    if facts:
        parts.append(f'<p class="note">{_e("; ".join(facts))}</p>')
    for name, fn in (("per-layer dynamics", fig_probe_dynamics), ("structure", fig_probe_structure)):
        parts.append(_figure_html(f"{r.id} probes: {name}", fn, pr))
    return parts


def ladder_part(records: list[Record]) -> Section | None:
    """The scaling-law fits of a ladder's records (bench ladder), none for other records."""
    from markupsafe import Markup

    from .figures.ladder import ladder_section

    found = ladder_section(records)
    return Section(found[0], found[1], Markup(found[2])) if found else None


def sections(records: list[Record], curves: dict, baseline, target, at) -> list[Section]:
    """The page's sections in order; those with nothing to show are left out."""
    from .precision_report import downstream_html, precision_html

    found = [leaderboard_section(records, curves, baseline, target), curves_section(records, curves),
             Section.from_parts("views", views_section(records, curves, at)),
             Section.from_parts("lr", lr_section(records)),
             Section.from_parts("comparisons", figures_section(records, curves)), frontier_section(records),
             scaling_section(records), ladder_part(records), Section.from_parts("downstream", downstream_html(records)),
             Section.from_parts("precision", precision_html(records)), probes_section(records),
             Section.from_parts("moe", moe_section(records)),  # MoE cells only: expert load, routing
             provenance_section(records)]
    return [s for s in found if s is not None]


def render_html(records: list[Record], title: str, curves: dict | None = None, baseline=None,
                target: float | None = None, at=None) -> str:
    """The whole report as one HTML string (figures embedded as base64 PNG data URIs). ``at``:
    'flops=X' / 'seconds=Y' / 'steps=Z' sets that view's budget (default: the largest every cell reached)."""
    curves = curves or {}
    baseline, at = resolve_baseline(baseline), resolve_at(at)
    check_at(records, curves, at)
    status = Counter(r.status for r in records)
    return template().render(
        title=title, cells=len(records), statuses=", ".join(f"{v} {k}" for k, v in status.items()),
        generated=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        sections=sections(records, curves, baseline, target, at))


# ---- files and the command ----------------------------------------------------------------------

def matrix_folders(folder: Path) -> list[Path]:
    """The matrix folders under ``folder`` (itself, if it holds cell folders directly)."""
    folder = Path(folder)
    return sorted({p.parent.parent for p in folder.glob("**/record.json")})


def write_report(folder: Path, out: Path | None = None, baseline=None, target: float | None = None,
                 warn=None, at=None) -> list[Path]:
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
        write_text(path, render_html(records, m.name, load_curves(m), baseline, target, at))
        written.append(path)
    return written
