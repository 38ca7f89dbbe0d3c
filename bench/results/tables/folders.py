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

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError
from .. import render
from ..records import Record
from ..stats.groups import final_val_ppl, flat, run_order, summarize
from ..stats.paired import Paired, judge, versus
from ..stats.verdicts import DEFAULT_MARGIN, LEGEND as VERDICT_LEGEND
from . import Column, Table, fmt
from .comparisons import VERDICT_COLUMN, result_text, seeds_text, test_text, tone

STANDARD = ("scale", "activation", "norm")
UNSET = "(unset)"
LEGEND = ("A, B: mean final validation PPL ± 95% CI over each side's ok seeds (n); delta_ppl and delta_loss: "
          "the mean per-seed difference B - A of final validation PPL and loss over the seeds both sides have "
          "(paired t-test, effect size Cohen's d_z), or the difference of means (Welch's statistic with min(n_a, n_b) "
          "- 1 dof) when fewer than 2 seeds are shared; ci95: the test's 95% interval of delta_loss; p_holm: "
          "Holm-adjusted over every group compared; result: B better (*) / worse (†) than A at p_holm < 0.05, "
          "equivalent, undecided, or why there is no test; (n<3): fewer than 3 seeds. B/A tokens/s: the ratio of "
          "mean throughputs (above 1: B is faster). " + VERDICT_LEGEND)


@dataclass
class Side:
    """One folder: its name as typed, where it is, and its records."""

    label: str
    folder: Path
    records: list[Record]


@dataclass
class Matched:
    """A group present on both sides: its identity (without the seed), A's and B's records, and B
    against A (``paired.versus``, B as the group and A as the baseline)."""

    key: tuple
    a: list[Record]
    b: list[Record]
    paired: Paired


@dataclass
class Unmatched:
    side: str  # "A" or "B"
    record: Record
    why: str


@dataclass
class Comparison:
    a: Side
    b: Side
    differs: dict[str, tuple[str, str]]  # field -> (A's value, B's value), set aside from the identity
    ignored: list[str]
    groups: list[Matched] = field(default_factory=list)
    unmatched: list[Unmatched] = field(default_factory=list)


def fields_of(r: Record) -> dict[str, str]:
    """The identity fields of a record, as comparable texts (the seed apart)."""
    fields = {k: repr(v) for k, v in flat(r.config).items() if k not in ("seed", "scale")}
    return {"scale": r.scale, "activation": r.activation, "norm": r.norm, **fields}


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


def compare_sides(a: Side, b: Side, ignore: list[str] | None = None, margin: float = DEFAULT_MARGIN) -> Comparison:
    """Matches A's cells with B's (see the module docstring); every group's verdict within +-``margin``."""
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
    out.unmatched = [Unmatched("A", r, _why(r, k, ib, "B")) for k, r in ia.items() if k not in ib] + \
                    [Unmatched("B", r, _why(r, k, ia, "A")) for k, r in ib.items() if k not in ia]
    groups: dict[tuple, tuple[list[Record], list[Record]]] = {}
    for k, r in ia.items():
        groups.setdefault(k[:-1], ([], []))[0].append(r)
    for k, r in ib.items():
        if k[:-1] in groups:
            groups[k[:-1]][1].append(r)
    for g, (ra, rb) in groups.items():
        if rb:
            text = ", ".join(f"{k}={v}" for k, v in g)
            out.groups.append(Matched(g, ra, rb, versus(dict(g).get("scale", ""), ("B", text), ("A", text), rb, ra)))
    judge((m.paired for m in out.groups), margin=margin)
    return out


# ---- the tables ----------------------------------------------------------------------------------

def mean_ppl(recs: list[Record]) -> str:
    """'mean ± CI half-width (n=k)' of the final validation PPL, the cells not ok counted in '[...]'."""
    ppls = [v for r in recs if (v := final_val_ppl(r)) is not None]
    bad = [r.status for r in recs if r.status != "ok"]
    text = "-"
    if ppls:
        s = summarize(ppls)
        text = fmt(s.mean, ".3f") + (f" ± {fmt(s.half_width, '.3f')}" if s.half_width is not None else "") + \
            f" (n={s.n})"
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


def _ratio(m: Matched) -> float | None:
    ta, tb = _tps(m.a), _tps(m.b)
    return tb / ta if ta and tb else None


def group_columns(c: Comparison) -> list[Column]:
    """The groups' columns: the standard axes (a value that sets A apart from B reads 'A's -> B's'), the
    other identity fields that differ between groups, A and B, their differences and the statistics."""
    varying = sorted(k for k in dict.fromkeys(k for m in c.groups for k, _ in m.key) if k not in STANDARD
                     and len({dict(m.key).get(k) for m in c.groups}) > 1)

    def standard(k):
        def get(m):
            d = dict(m.key)
            if k in d:
                return d[k]
            return f"{c.differs[k][0]} → {c.differs[k][1]}" if k in c.differs else "(ignored)"
        return get

    def config(m):
        d = dict(m.key)
        return ", ".join(f"{k}={d[k]}" for k in varying if k in d) or None

    def left(name, get, **kw):
        return Column(name, get=get, align="left", **kw)

    return [*(left(k, standard(k)) for k in STANDARD), left("config", config),
            left("seeds", lambda m: f"{n} pairs" if (n := ppl_difference(m.a, m.b)[1]) >= 2
                 else seeds_text(m.paired, a_first=True)),
            left("A val_ppl", lambda m: mean_ppl(m.a)), left("B val_ppl", lambda m: mean_ppl(m.b)),
            Column("delta_ppl", get=lambda m: ppl_difference(m.a, m.b)[0], fmt="+.3f"),
            Column("delta_loss", get=lambda m: m.paired.diff, fmt="+.4f"),
            left("ci95", lambda m: m.paired.ci, fmt="+.4f"), left("test", lambda m: test_text(m.paired)),
            Column("p", get=lambda m: m.paired.test.p if m.paired.test else None, fmt=".3g"),
            Column("p_holm", get=lambda m: m.paired.p_holm, fmt=".3g"),
            left("result", lambda m: result_text(m.paired), tone=lambda m: tone(m.paired)),
            left("verdict", lambda m: VERDICT_COLUMN.value(m.paired)),
            Column("A tokens/s", get=lambda m: _tps(m.a), fmt=",.0f"),
            Column("B tokens/s", get=lambda m: _tps(m.b), fmt=",.0f"),
            Column("B/A tokens/s", get=_ratio, fmt=".3f")]


def group_table(c: Comparison) -> Table:
    """The groups on both sides; the config column only when some group needs it."""
    columns = group_columns(c)
    config = next(col for col in columns if col.name == "config")
    if all(config.value(m) is None for m in c.groups):
        columns.remove(config)
    return Table(f"{c.b.label} against {c.a.label}: final validation PPL", columns, c.groups, LEGEND)


UNMATCHED_COLUMNS = (
    Column("side", align="left"), Column("id", get=lambda u: u.record.id, align="left"),
    *(Column(k, get=lambda u, k=k: getattr(u.record, k), align="left") for k in ("scale", "activation", "norm")),
    Column("seed", get=lambda u: u.record.seed), Column("status", get=lambda u: u.record.status, align="left"),
    Column("why", align="left"),
)


def unmatched_table(c: Comparison) -> Table:
    return Table("Cells without a match", UNMATCHED_COLUMNS, c.unmatched)


def csv_table(c: Comparison) -> Table:
    """The groups' rows, then one row per unmatched cell (result 'only in A: why' / 'only in B: why')."""
    def either(col: Column):
        def get(row):
            if isinstance(row, Matched):
                return col.value(row)
            r = row.record
            return {"scale": r.scale, "activation": r.activation, "norm": r.norm, "seeds": str(r.seed),
                    "result": f"only in {row.side}: {row.why}", f"{row.side} val_ppl": mean_ppl([r])}.get(col.name)
        return Column(col.name, col.header, get, col.fmt, col.align)

    columns = [either(col) for col in group_columns(c)]
    columns.append(Column("id", get=lambda row: row.record.id if isinstance(row, Unmatched) else None))
    return Table(f"{c.a.label} vs {c.b.label}", columns, [*c.groups, *c.unmatched])


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
    n_a = sum(1 for u in c.unmatched if u.side == "A")
    lines.append(f"Matched {len(c.a.records) - n_a} cell(s) of A with B's, in {len(c.groups)} group(s); "
                 f"unmatched: {n_a} in A only, {len(c.unmatched) - n_a} in B only"
                 + (" (listed below)." if c.unmatched else "."))
    if not c.groups:
        lines.append("No group of A has a counterpart in B: nothing to compare (see the unmatched cells).")
    return lines


# ---- output ----------------------------------------------------------------------------------------

@dataclass
class Tables:
    """A comparison's tables, built once: what was compared, the groups, the unmatched cells."""

    title: str
    header: list[str]
    groups: Table | None
    unmatched: Table | None
    csv: Table


def comparison_tables(c: Comparison) -> Tables:
    return Tables(f"{c.a.label} vs {c.b.label}", header_lines(c), group_table(c) if c.groups else None,
                  unmatched_table(c) if c.unmatched else None, csv_table(c))


def to_markdown(t: Tables) -> str:
    return render.markdown_document(t.title, [x for x in (t.groups, t.unmatched) if x], t.header)


def to_csv(t: Tables) -> str:
    return render.csv(t.csv)


def to_latex(t: Tables) -> str:
    out = f"% {t.title}\n{render.PREAMBLE}\n\n"
    if t.groups:  # what was compared, then the legend, as the footnote
        out += render.latex(dataclasses.replace(t.groups, legend=None, notes=(*t.header, t.groups.legend)),
                            label="compare")
    else:
        out += "".join(f"% {line}\n" for line in t.header) + "\n"
    if t.unmatched:
        a_b = t.groups.title.split(":")[0] if t.groups else t.title
        out += render.latex(t.unmatched, f"{a_b}: cells without a match", "compare-unmatched")
    return out.rstrip("\n") + "\n"


def print_rich(t: Tables, console) -> None:
    for line in t.header:
        console.print(line, highlight=False, markup=False)
    for table in (t.groups, t.unmatched):
        if table:
            render.rich(console, table, render.titled(t.title, table.title))


RENDER = {"md": to_markdown, "csv": to_csv, "latex": to_latex}
