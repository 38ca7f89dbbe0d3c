"""`bench claims NAME`: the papers' claims (configs/claims/NAME.yaml) checked: exactly the cells they
need trained through the one launcher (or seeds added until decided), one verdict per claim, arm and
scale, printed and kept under the claims file's content hash (bench/results/paper_claims.py)."""

from __future__ import annotations

from .common import add_launch_options, add_overrides, add_run_options, add_tune, add_until_decided, \
    launch_options, overrides_from, run_options, sequential_design, split_list, tuning_options

HELP = "check a paper's claims (configs/claims/NAME.yaml): train the cells they need, one verdict per claim"


def add_parser(sub):
    from ..results.paper_claims import CLAIMS_DIR

    names = ", ".join(sorted(p.stem for p in CLAIMS_DIR.glob("*.yaml")))
    p = sub.add_parser(
        "claims", help=HELP,
        description="Train exactly the cells a claims file needs (each claim's arms and baseline at each scale, "
                    "with its settings) into OUT/claims-NAME/, resumable like `bench run`, and judge every claim: "
                    "reproduced, not reproduced or undecided (with what would decide it), the tests Holm-corrected "
                    "over the file. The table is printed and written, with the verdicts, to "
                    "OUT/claims-NAME/claims/NAME-HASH.{json,md}: HASH is the claims file's content hash, so an "
                    "edited file makes new verdicts and keeps the old ones (docs/verdicts.md, 'Claims').")
    p.add_argument("claims", metavar="NAME", help=f"a claims file in configs/claims/ ({names}) or a YAML path")
    p.add_argument("--scale", help="comma-separated scales [default: the claims file's scales]")
    p.add_argument("--seed", default="0", help="comma-separated seeds of the first round")
    add_run_options(p)
    next(a for a in p._actions if a.dest == "name").help = ("the results folder of the claims' cells, OUT/NAME/ "
                                                             "[default: claims-<claims file's name>]")
    add_until_decided(p)
    add_tune(p)
    add_launch_options(p)
    add_overrides(p)
    p.set_defaults(margin=None)  # each claim states its own margin; --until-decided reads this for the folder
    return p


def claim_cells(claims, scales, seeds, overrides: dict) -> list:
    """Every cell the claims need, once: each claim's arms and baseline at each scale and seed, with
    the claim's settings (then the command line's overrides)."""
    from ..errors import ConfigError
    from ..run.config.matrix import check_axis_values, make_cell

    check_axis_values("scale", list(scales))
    for c in claims.claims:
        check_axis_values("activation", [g[0] for g in c.groups])
        check_axis_values("norm", [g[1] for g in c.groups])
    for c in claims.claims:  # a claim's cells are found by its settings: an override may not change them
        for key, value in c.settings.items():
            if key in overrides and str(overrides[key]) != str(value):
                raise ConfigError(f"--{key} {overrides[key]} changes a setting claim {c.id} of {claims.name} is "
                                  f"judged at ({key}: {value}): drop it, or edit the claims file (a new version)")
    cells = {}
    for scale in scales:
        for c in claims.claims:
            for act, norm in c.groups:
                for seed in seeds:
                    combo = {"scale": scale, "activation": act, "norm": norm, "seed": seed}
                    cell = make_cell({**c.settings, **combo}, overrides, combo)
                    cells.setdefault(cell.id, cell)
    return list(cells.values())


def claims_needs(claims, scales, design):
    """``rounds.Needs`` for the claims: a seed pair for every comparison still undecided with fewer than
    K pairs and that has learned."""
    from ..launch.rounds import seed_pair
    from ..results.paper_claims import UNDECIDED, judge_claims

    def needs(records, known):
        by_id = {r.id: r for r in records}
        out = []
        for j in judge_claims(claims, records, scales, design.design, design.alpha):
            if j.judged and j.outcome == UNDECIDED and len(j.shared) < design.design.max_seeds:
                lost = {by_id[i].seed for i in (*j.ids, *j.base_ids) if by_id[i].status == "diverged"}
                out += seed_pair(j.ids, j.base_ids, {*j.shared, *lost}, known)
        return out

    return needs


def train(name, cells, claims, scales, opts, how, args, seeds):
    """The comparison cells of one folder, in rounds until decided or at once; (launch, cells)."""
    from ..launch.launcher import launch
    from ..launch.rounds import until_decided

    design = sequential_design(args, opts.out / name, len(seeds))
    if design is not None:
        return until_decided(name, cells, opts, how, design, claims_needs(claims, scales, design))
    return launch(name, cells, opts, how), cells


def judged(claims, folder, scales, cells, tuning: str | None):
    from ..results.paper_claims import entry, judge_claims
    from ..results.design import read_design
    from ..results.records import load_records
    from .common import report_problems

    records, problems = load_records(folder)
    report_problems(p for p in problems if p.path.parent.name in {c.id for c in cells})
    recorded = read_design(folder)
    found = judge_claims(claims, records, scales, recorded.design if recorded else None)
    return [entry(j, claims.digest, tuning) for j in found], recorded


def main(args) -> int:
    from ..console import err, out
    from ..errors import ConfigError
    from ..launch.tuning import SUFFIX, tune
    from ..results import render
    from ..results.paper_claims import claims_table, load_claims, mark_lr_dependence, verdicts_path, write_verdicts
    from ..results.records import write_text

    opts = run_options(args)
    how = launch_options(args)
    tuning = tuning_options(args)
    claims = load_claims(args.claims)
    scales = split_list(args.scale) or list(claims.scales)
    seeds = split_list(args.seed) or ["0"]
    if not all(s.isdigit() for s in seeds):
        raise ConfigError(f"--seed takes comma-separated non-negative integers, got {args.seed!r}")
    seeds = sorted({int(s) for s in seeds})
    name = args.name or f"claims-{claims.name}"
    if not name.strip() or name in (".", "..") or "/" in name or "\\" in name:
        raise ConfigError(f"--name takes a folder name (no '/', not '.' or '..'), got {name!r}")
    cells = claim_cells(claims, scales, seeds, overrides_from(args))
    folder = opts.out / name
    sequential_design(args, folder, len(seeds))  # a bad design is one line before anything trains
    out.print(f"{name}: {len(claims.claims)} claim(s) of {claims.name} (claims file {claims.digest}) at "
              f"{', '.join(scales)}: {len(cells)} cell(s) in the first round", highlight=False)
    launched, cells = train(name, cells, claims, scales, opts, how, args, seeds)
    runs, compared = [launched], [launched]  # every launch; those of comparison cells
    if tuning is not None and (launched.here or how.dry_run):
        out.print(f"--tune lr: each group gets {tuning.describe()}", highlight=False)
        tuned_launch, tuned_cells, best = tune(name, cells, opts, how, tuning)
        runs.append(tuned_launch)
        lost = sum(v is None for v in best.values())
        if lost:
            err.print(f"[yellow]warning:[/] {lost} group(s) have no LR that trained on the grid: their claims are "
                      "judged at the shared LR only", highlight=False)
        if tuned_cells:
            first = [c for c in tuned_cells if c.config.seed in seeds]
            tuned_run, tuned_cells = train(name + "-tuned", first, claims, scales, opts, how, args, seeds)
            runs.append(tuned_run)
            compared.append(tuned_run)
    if not all(r.here for r in runs):
        return 0
    entries, recorded = judged(claims, folder, scales, cells, None)
    if tuning is not None and (opts.out / (name + "-tuned")).is_dir():
        tuned, _ = judged(claims, opts.out / (name + "-tuned"), scales, [], f"best of {tuning.describe()}; "
                          f"tuning runs in {name + SUFFIX}")
        entries = mark_lr_dependence(entries, tuned)
    note = "" if recorded is None else (
        f"Trained until decided (at most {recorded.design.max_seeds} seeds, {recorded.design.spending} spending, "
        f"alpha {recorded.alpha:g}): the verdicts are the sequential design's tests on the paired seeds.")
    table = claims_table(entries, claims.name, claims.digest, claims.paper, note)
    render.rich(out, table)
    path = write_verdicts(folder, claims, entries)
    md = verdicts_path(folder, claims.name, claims.digest).with_suffix(".md")
    write_text(md, render.markdown_document(f"{name}: claims", [table]))
    for p in (path, md):
        out.print(f"wrote {p}", highlight=False)
    bad = [r.id for run in runs for r in run.records if r.status not in ("ok", "diverged")]
    bad += [r.id for run in compared for r in run.records if r.status == "diverged"]  # a diverged tuning LR is
    # a result of the tuning; a diverged comparison cell is not
    if bad:
        err.print(f"[red]{len(bad)} cell(s) did not finish ok:[/] {', '.join(bad)}")
    return max(1 if bad else 0, *(r.code for r in runs))
