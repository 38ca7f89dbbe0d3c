"""Seeds where they decide something: a command's cells trained in rounds, `--until-decided
--max-seeds K`.

The first round is the command's own cells (its seeds, 0 by default). After each round the results
folder is read as its tables read it, with the folder's sequential design (results/design.py, fixed
and written before the first round), and every comparison still undecided with fewer than K pairs
gets one more seed: the next seed its group and its baseline do not both have, so a baseline seed
another comparison already added is not trained twice. The rounds stop when every comparison is
decided or at K, when a round trains nothing that finishes ok (a cell that fails is not retried in a
loop), or when cells were left unfinished (a signal: the same command resumes them).

Every round goes through the one launcher (``launcher.launch``): claims, resume, --workers and
--slurm --wait apply to the added seeds as to the first ones, and a rerun of a finished run finds
every comparison decided or at K and trains nothing. What the rounds decide is the command's
business (``needs``): the leaderboard's comparisons for `bench run` and `bench ladder`
(``undecided_comparisons``), the claims for `bench claims`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from itertools import count

from ..results.design import Recorded, record_design
from ..results.records import Record, cell_dir, load_records, now
from ..run.config.matrix import Cell, axis_order, with_seed
from .launcher import LaunchOptions, Launched, launch

Needs = Callable[[list[Record], dict[str, Cell]], list[Cell]]


def next_seed(taken) -> int:
    """The smallest seed >= 0 not among ``taken`` (the seeds a comparison already has as pairs, or
    cannot have: a side diverged there)."""
    have = set(taken)
    return next(s for s in count() if s not in have)


def seed_pair(group_ids, base_ids, taken, known: dict[str, Cell]) -> list[Cell]:
    """The cells that give a comparison its next pair: its group and its baseline at the next seed it
    lacks (none when this run did not make either side's cells)."""
    group = next((known[i] for i in group_ids if i in known), None)
    base = next((known[i] for i in base_ids if i in known), None)
    if group is None or base is None:
        return []
    seed = next_seed(taken)
    return [with_seed(group, seed), with_seed(base, seed)]


def undecided_comparisons(design: Recorded, baseline=None) -> Needs:
    """``needs`` for the leaderboard's comparisons: a seed for every comparison the folder's tables
    (read with ``design``) show undecided with fewer than K pairs and that has learned."""
    from ..results.stats.paired import NOT_LEARNED, compare
    from ..results.stats.verdicts import UNDECIDED

    def needs(records: list[Record], known: dict[str, Cell]) -> list[Cell]:
        by_id = {r.id: r for r in records}
        out = []
        for c in compare(records, baseline, design.alpha, design.margin, design.design).values():
            if c.is_baseline or c.note == NOT_LEARNED or len(c.shared) >= design.design.max_seeds:
                continue
            if c.decision is None or c.decision.kind == UNDECIDED:
                lost = {by_id[i].seed for i in (*c.ids, *c.base_ids) if by_id[i].status == "diverged"}
                out += seed_pair(c.ids, c.base_ids, {*c.shared, *lost}, known)
        return out

    return needs


def until_decided(name: str, cells: list[Cell], opts, how: LaunchOptions, design: Recorded, needs: Needs,
                  console=None) -> tuple[Launched, list[Cell]]:
    """Train ``cells``, then rounds of the cells ``needs`` asks for, into OUT/``name``/ (see the module
    docstring). Returns the last launch's outcome with every record trained or found, and every cell
    of the run (the first round's and the added ones)."""
    from ..console import err, out

    console = console or out
    folder = opts.out / name
    design = record_design(folder, replace(design, started=design.started or now()), write=not how.dry_run)
    known = {c.id: c for c in cells}
    opts = replace(opts, axis_order=opts.axis_order or axis_order(cells))  # one order for every round
    launched = launch(name, cells, opts, how, console)
    records = {r.id: r for r in launched.records}
    for round_no in count(2):
        if not launched.here or launched.unfinished:
            if how.dry_run:
                console.print("--until-decided: later rounds add seeds to the comparisons the first round leaves "
                              "undecided (dry run: nothing trained)", highlight=False)
            break
        asked = list({c.id: c for c in needs(load_records(folder)[0], known)}.values())
        more = [c for c in asked if not _done(opts, name, c)]
        if not more:
            console.print(f"{name}: " + ("no comparison needs a seed (each is decided, has its "
                                         f"{design.design.max_seeds} seeds (--max-seeds), or has not learned)"
                                         if not asked else
                                         "the undecided comparisons' next seeds are already trained and gave no "
                                         "pair") + f"; {round_no - 1} round(s)", highlight=False)
            break
        seeds = sorted({c.config.seed for c in more})
        console.print(f"{name}: round {round_no}: {len(more)} cell(s) at seed(s) {', '.join(map(str, seeds))} for "
                      "the comparisons still undecided", highlight=False)
        known.update((c.id, c) for c in more)
        launched = launch(name, more, opts, how, console)
        records.update((r.id, r) for r in launched.records)
        ids = {c.id for c in more}
        if launched.here and not any(r.status == "ok" for r in launched.records if r.id in ids):
            err.print(f"[yellow]warning:[/] round {round_no} finished no cell ok; stopping the rounds (the same "
                      "command retries them)", highlight=False)
            break
    return Launched(tuple(records.values()), launched.unfinished, launched.here), list(known.values())


def _done(opts, name: str, cell: Cell) -> bool:
    from ..run.engine.folder import finished, record_of

    return finished(record_of(cell_dir(opts.out, name, cell.id)))
