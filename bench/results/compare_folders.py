"""Two result folders side by side (`bench compare A B`): the same matrix run on two code versions,
or two matrices that differ in one axis.

A cell's identity is its scale, activation, scheme, seed and every config field, except the fields
that set A apart from B: those with one value throughout A and another throughout B (a learning
rate, a precision, an activation, a default changed by a new code version), and any the user names
with ``ignore``. Cells of A and B with the same identity are matched; a group (the identity without
the seed) present on both sides gets A's and B's mean over seeds, the difference B - A, and the
paired statistics of ``paired.versus`` over the shared seeds (Welch's t-test when fewer than 2 are
shared), Holm-corrected over every group. Every cell without a match is listed, with the reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .grouping import _flat, run_order
from .paired import Paired, holm_adjust, versus
from .records import Record
from .summary import final_val_ppl, summarize

STANDARD = ("scale", "activation", "norm")
UNSET = "(unset)"
COLUMNS = ("scale", "activation", "norm", "config", "seeds", "A val_ppl", "B val_ppl", "delta_ppl", "delta_loss",
           "ci95", "test", "p", "p_holm", "result", "A tokens/s", "B tokens/s", "B/A tokens/s")
UNMATCHED_COLUMNS = ("side", "id", "scale", "activation", "norm", "seed", "status", "why")
LEGEND = ("A, B: mean final validation PPL ± 95% CI over each side's ok seeds (n); delta_ppl and delta_loss: "
          "the mean per-seed difference B - A of final validation PPL and loss over the seeds both sides have "
          "(paired t-test, effect size Cohen's d_z), or the difference of means (Welch's t-test) when fewer than 2 "
          "seeds are shared; ci95: the percentile bootstrap 95% interval of delta_loss; p_holm: Holm-adjusted over "
          "every group compared; result: B better (*) / worse (†) than A at p_holm < 0.05, n.s., or why there is "
          "no test; (n<3): fewer than 3 seeds. B/A tokens/s: the ratio of mean throughputs (above 1: B is faster).")


@dataclass
class Side:
    """One folder: its name as typed, where it is, and its records."""

    label: str
    folder: Path
    records: list[Record]


@dataclass
class Comparison:
    a: Side
    b: Side
    differs: dict[str, tuple[str, str]]  # field -> (A's value, B's value), set aside from the identity
    ignored: list[str]
    groups: list[tuple[tuple, list[Record], list[Record], Paired]] = field(default_factory=list)
    unmatched: list[tuple[str, Record, str]] = field(default_factory=list)  # (side, record, why)


def fields_of(r: Record) -> dict[str, str]:
    """The identity fields of a record, as comparable texts (the seed apart)."""
    flat = {k: repr(v) for k, v in _flat(r.config).items() if k not in ("seed", "scale")}
    return {"scale": r.scale, "activation": r.activation, "norm": r.norm, **flat}


def differing_fields(a: list[Record], b: list[Record]) -> dict[str, tuple[str, str]]:
    """Fields with one value throughout A and another throughout B (an unset field counts as a value)."""
    fa, fb = [fields_of(r) for r in a], [fields_of(r) for r in b]
    keys = dict.fromkeys(k for f in fa + fb for k in f)
    out = {}
    for k in keys:
        va, vb = {f.get(k, UNSET) for f in fa}, {f.get(k, UNSET) for f in fb}
        if len(va) == 1 and len(vb) == 1 and va != vb:
            out[k] = (next(iter(va)), next(iter(vb)))
    return out


def identity(r: Record, aside: set[str], keys: list[str]) -> tuple:
    f = fields_of(r)
    return tuple((k, f.get(k, UNSET)) for k in keys if k not in aside)


def _index(side: Side, aside: set[str], keys: list[str]) -> dict[tuple, Record]:
    out: dict[tuple, Record] = {}
    for r in run_order(side.records):
        key = identity(r, aside, keys) + (("seed", r.seed),)
        if key in out:
            raise ConfigError(f"{side.label} ({side.folder}) holds two cells with one identity, {out[key].id} and "
                              f"{r.id}: name one matrix folder, not a folder of several")
        out[key] = r
    return out


def _why(r: Record, key: tuple, other: dict[tuple, Record], other_label: str) -> str:
    """Why a cell has no match: its seed is missing there, or the fields the nearest cell differs in."""
    group = key[:-1]
    if any(k[:-1] == group for k in other):
        return f"seed {r.seed} is not in {other_label}"
    if not other:
        return f"{other_label} has no cells"
    mine = dict(key)
    def distance(o: dict) -> tuple[int, int]:  # the same scale, activation and scheme first
        diff = [k for k, v in o.items() if mine.get(k) != v]
        return sum(k in STANDARD for k in diff), len(diff)

    near = min((dict(o) for o in other), key=distance)
    diffs = [k for k, v in near.items() if mine.get(k) != v]
    text = ", ".join(f"{k} ({mine.get(k, UNSET)} here, {v} there)" for k, v in near.items() if k in diffs[:3])
    return f"no cell of {other_label} has the same identity; the nearest differs in {text}" + (
        ", ..." if len(diffs) > 3 else "")


def compare_sides(a: Side, b: Side, ignore: list[str] | None = None) -> Comparison:
    """Matches A's cells with B's (see the module docstring)."""
    ignore = list(ignore or [])
    known = dict.fromkeys(k for r in a.records + b.records for k in fields_of(r))
    for k in ignore:
        if k not in known:
            from models import check_choice

            check_choice("field to ignore", k, [*known])
    differs = differing_fields(a.records, b.records)
    aside = set(differs) | set(ignore)
    keys = list(known)
    ia, ib = _index(a, aside, keys), _index(b, aside, keys)
    out = Comparison(a, b, differs, ignore)
    out.unmatched = [("A", r, _why(r, k, ib, "B")) for k, r in ia.items() if k not in ib] + \
                    [("B", r, _why(r, k, ia, "A")) for k, r in ib.items() if k not in ia]
    groups: dict[tuple, tuple[list[Record], list[Record]]] = {}
    for k, r in ia.items():
        groups.setdefault(k[:-1], ([], []))[0].append(r)
    for k, r in ib.items():
        if k[:-1] in groups:
            groups[k[:-1]][1].append(r)
    for g, (ra, rb) in groups.items():
        if rb:
            text = ", ".join(f"{k}={v}" for k, v in g)
            out.groups.append((g, ra, rb, versus(dict(g).get("scale", ""), ("B", text), ("A", text), rb, ra)))
    holm_adjust(c for *_, c in out.groups)
    return out


# ---- rows ------------------------------------------------------------------------------------------

def _mean_ppl(recs: list[Record]) -> str:
    ppls = [v for r in recs if (v := final_val_ppl(r)) is not None]
    bad = [r.status for r in recs if r.status != "ok"]
    text = "-"
    if ppls:
        s = summarize(ppls)
        text = f"{s.mean:.3f}" + (f" ± {s.half_width:.3f}" if s.half_width is not None else "") + f" (n={s.n})"
    return text + (f" [{len(bad)} not ok: {', '.join(sorted(set(bad)))}]" if bad else "")


def ppl_difference(ra: list[Record], rb: list[Record]) -> tuple[float | None, int]:
    """(B - A in PPL, shared seeds): the mean per-seed difference over the seeds both have (2 or more),
    else the difference of the means, as delta_loss is paired or not."""
    pa = {r.seed: v for r in ra if (v := final_val_ppl(r)) is not None}
    pb = {r.seed: v for r in rb if (v := final_val_ppl(r)) is not None}
    shared = sorted(set(pa) & set(pb))
    if len(shared) >= 2:
        return sum(pb[s] - pa[s] for s in shared) / len(shared), len(shared)
    if pa and pb:
        return sum(pb.values()) / len(pb) - sum(pa.values()) / len(pa), len(shared)
    return None, len(shared)


def _tps(recs: list[Record]) -> float | None:
    vals = [r.metrics.tokens_per_sec for r in recs if r.status == "ok" and r.metrics.tokens_per_sec]
    return sum(vals) / len(vals) if vals else None


def _f(v, spec: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    return format(v, spec)


def _std(c: Comparison, d: dict, k: str) -> str:
    """A standard axis's value: the group's, or 'A's -> B's' when it is what sets A and B apart."""
    if k in d:
        return d[k]
    if k in c.differs:
        return f"{c.differs[k][0]} → {c.differs[k][1]}"
    return "(ignored)"


def group_rows(c: Comparison) -> list[list[str]]:
    """One row per group on both sides: A, B, the differences and the paired statistics."""
    varying = {k for k in dict.fromkeys(k for g, *_ in c.groups for k, _ in g) if k not in STANDARD
               and len({dict(g).get(k) for g, *_ in c.groups}) > 1}
    rows = []
    for g, ra, rb, p in c.groups:
        d = dict(g)
        dppl, shared = ppl_difference(ra, rb)
        ta, tb = _tps(ra), _tps(rb)
        t = p.test
        seeds = f"{shared} pairs" if shared >= 2 else f"{p.n_baseline} vs {p.n}"
        result = p.verdict + (f" {p.mark}" if p.mark else "") + (" (n<3)" if p.few_seeds else "")
        rows.append([*(_std(c, d, k) for k in STANDARD),
                     ", ".join(f"{k}={d[k]}" for k in sorted(varying) if k in d) or "-", seeds,
                     _mean_ppl(ra), _mean_ppl(rb), _f(dppl, "+.3f"), _f(p.diff, "+.4f"),
                     "-" if p.ci is None else f"[{p.ci[0]:+.4f}, {p.ci[1]:+.4f}]",
                     "-" if t is None else f"{t.name} (t={_f(t.t, '.3g')}, dof={t.dof:.3g})",
                     _f(t.p if t else None, ".3g"), _f(p.p_holm, ".3g"), result,
                     _f(ta, ",.0f"), _f(tb, ",.0f"), _f(tb / ta if ta and tb else None, ".3f")])
    return rows


def group_table(c: Comparison) -> tuple[list[str], list[list[str]]]:
    """(columns, rows) of the groups; the config column only when some group needs it."""
    rows = group_rows(c)
    i = COLUMNS.index("config")
    if all(row[i] == "-" for row in rows):
        return [col for col in COLUMNS if col != "config"], [row[:i] + row[i + 1:] for row in rows]
    return list(COLUMNS), rows


def unmatched_rows(c: Comparison) -> list[list[str]]:
    return [[side, r.id, r.scale, r.activation, r.norm, str(r.seed), r.status, why] for side, r, why in c.unmatched]


def _commit(side: Side) -> str:
    commits = {((r.environment.get("git") or {}).get("commit") or "?")[:12]
               + (" (dirty)" if (r.environment.get("git") or {}).get("dirty") else "") for r in side.records}
    return ", ".join(sorted(commits)) if len(commits) <= 3 else f"{len(commits)} commits"


def header_lines(c: Comparison) -> list[str]:
    """What was compared: the two folders, their code versions, what sets them apart, how many matched."""
    lines = [f"A: {c.a.folder} ({len(c.a.records)} cells, git {_commit(c.a)}); "
             f"B: {c.b.folder} ({len(c.b.records)} cells, git {_commit(c.b)})."]
    if c.differs:
        lines.append("A and B differ in (set aside when matching cells): " + "; ".join(
            f"{k} (A: {a}; B: {b})" for k, (a, b) in c.differs.items()) + ".")
    else:
        lines.append("A and B have the same configurations: cells are matched on every field.")
    if c.ignored:
        lines.append(f"Ignored when matching (--ignore): {', '.join(c.ignored)}.")
    n_a = sum(1 for s, *_ in c.unmatched if s == "A")
    lines.append(f"Matched {len(c.a.records) - n_a} cell(s) of A with B's, in {len(c.groups)} group(s); "
                 f"unmatched: {n_a} in A only, {len(c.unmatched) - n_a} in B only"
                 + (" (listed below)." if c.unmatched else "."))
    if not c.groups:
        lines.append("No group of A has a counterpart in B: nothing to compare (see the unmatched cells).")
    return lines


# ---- output ----------------------------------------------------------------------------------------

TITLE = "B against A: final validation PPL"
UNMATCHED_TITLE = "Cells without a match"


def to_markdown(c: Comparison) -> str:
    from .compare_tables import markdown_table

    lines = [f"# {c.a.label} vs {c.b.label}", "", *(w for ln in header_lines(c) for w in (ln, "")),
             *([f"## {TITLE}", "", *markdown_table(*group_table(c)), "", LEGEND, ""] if c.groups else [])]
    if c.unmatched:
        lines += [f"## {UNMATCHED_TITLE}", "", *markdown_table(UNMATCHED_COLUMNS, unmatched_rows(c)), ""]
    return "\n".join(lines)


def to_csv(c: Comparison) -> str:
    """The groups' rows, then one row per unmatched cell (result 'only in A' / 'only in B')."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([*COLUMNS, "id"])
    w.writerows(group_rows(c))
    for side, r, why in c.unmatched:
        row = dict.fromkeys(COLUMNS, "")
        row.update({"scale": r.scale, "activation": r.activation, "norm": r.norm, "seeds": str(r.seed),
                    "result": f"only in {side}: {why}", f"{side} val_ppl": _mean_ppl([r])})
        w.writerow([*row.values(), r.id])
    return buf.getvalue()


def to_latex(c: Comparison) -> str:
    from .latex import PREAMBLE, table

    lines = [f"% {c.a.label} vs {c.b.label}", PREAMBLE, ""]
    lines += table(f"{c.b.label} against {c.a.label}: final validation PPL", *group_table(c),
                   [*header_lines(c), LEGEND], label="compare") if c.groups else [f"% {ln}" for ln in header_lines(c)]
    if c.unmatched:
        lines += table(f"{c.b.label} against {c.a.label}: cells without a match", UNMATCHED_COLUMNS,
                       unmatched_rows(c), label="compare-unmatched")
    return "\n".join(lines)


def render_rich(c: Comparison, console) -> None:
    from rich.table import Table

    for ln in header_lines(c):
        console.print(ln, highlight=False, markup=False)
    for title, cols, rows in ((TITLE, *group_table(c)), (UNMATCHED_TITLE, UNMATCHED_COLUMNS, unmatched_rows(c))):
        if not rows:
            continue
        t = Table(title=f"{c.a.label} vs {c.b.label}: {title}", title_justify="left")
        for col in cols:
            t.add_column(col, overflow="fold")
        for row in rows:
            t.add_row(*row)
        console.print(t)
        if title == TITLE:
            console.print(LEGEND, highlight=False, markup=False)


RENDER = {"md": to_markdown, "csv": to_csv, "latex": to_latex}
