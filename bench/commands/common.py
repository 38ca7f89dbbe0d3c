"""What several commands share: the matrix filters and --section.field overrides, the run and launch
options of every command that trains cells (`run`, `ladder`, `sweep`) and the leaderboard they end
with, the one way `table`, `report` and `eval` name a results target, and the help formatter.
Nothing here imports torch at module level: `bench --help` stays fast."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError, short
from ..run.config.options import STALE_AFTER

FORMATS = ("rich", "md", "csv", "latex")  # the table formats of bench table and bench compare


class HelpFormatter(argparse.HelpFormatter):
    """One default per option, written once as ``[default: X]``: an option whose help already says
    its default (a config field's, or a sentence) gets nothing more, and flags and unset options
    get none."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "[default" in text or "%(default)" in text or action.nargs == 0:
            return text
        if action.default is None or action.default is argparse.SUPPRESS or action.default == []:
            return text
        return f"{text} [default: %(default)s]"


def split_list(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


class Override(argparse.Action):
    """Keeps every --section.field VALUE and --config FILE in command-line order (later wins); each value
    is typed by jsonargparse when the cells are resolved."""

    def __call__(self, parser, namespace, value, option_string=None):
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), (option_string, value)])


def add_overrides(p: argparse.ArgumentParser) -> None:
    """One --section.field option per config field, its type, default and help (the field's docstring)
    as jsonargparse reads them from the dataclasses, and --config FILE."""
    from ..run.config.fields import CONFIG_HELP, fields, type_name

    g = p.add_argument_group("config overrides (apply to every cell; unset, a field takes the scale's, recipe's "
                             "or matrix's value, else the default shown; see configs/ for presets)")
    g.add_argument("--config", dest="overrides", action=Override, metavar="FILE", help=CONFIG_HELP)
    for path, f in fields().items():
        if path not in ("scale", "seed"):
            g.add_argument(f"--{path}", dest="overrides", action=Override, metavar=type_name(f.type).upper(),
                           help=f"{f.help} [default: {f.default}]".replace("%", "%%"))


def set_override(args: argparse.Namespace, path: str, value: str) -> None:
    """An override a command decides (e.g. --devices-per-cell K sets train.devices), after the user's."""
    args.overrides = [*(getattr(args, "overrides", None) or []), (f"--{path}", value)]


def overrides_from(args: argparse.Namespace) -> dict:
    """The overrides by dotted path, in order; a --config file's in its place."""
    from ..run.config.fields import config_file

    out = {}
    for option, value in getattr(args, "overrides", None) or []:
        if option == "--config":
            out.update(config_file(value))
        else:
            out[option[2:]] = value
    return out


def add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("matrix", nargs="?", default=None,
                   help="matrix name in configs/matrix/ or a YAML path [default: default]")
    p.add_argument("--scale", help="comma-separated scales; replaces the matrix's scale axis")
    p.add_argument("--activation", help="comma-separated activations; replaces the activation axis")
    p.add_argument("--norm", help="comma-separated schemes, '+gpas' to add GPAS (e.g. pre,pre+gpas)")
    p.add_argument("--seed", help="comma-separated seeds; replaces the seed axis")


def cells_from(args: argparse.Namespace):
    from ..run.config.matrix import expand, load_matrix

    only = {k: split_list(getattr(args, k)) for k in ("scale", "activation", "norm", "seed")}
    only = {k: v for k, v in only.items() if v}
    if "seed" in only:
        if not all(s.lstrip("-").isdigit() for s in only["seed"]):
            raise ConfigError(f"--seed takes comma-separated integers, got {short(args.seed)}")
        only["seed"] = [int(s) for s in only["seed"]]
    overrides = overrides_from(args)
    if "," in str(overrides.get("model.ffn") or ""):  # --model.ffn moe,dense: an axis, not one value
        only["model.ffn"] = split_list(overrides.pop("model.ffn"))
    matrix = load_matrix(args.matrix)
    return matrix, expand(matrix, overrides, only)


def add_gpu_arg(p) -> None:
    from ..launch.memory import GPUS

    p.add_argument("--gpu", default=None, metavar="NAME",
                   help=f"warn about cells whose estimated peak memory (bench/launch/memory.py) does not fit "
                        f"this GPU: {', '.join(GPUS)}")


def add_out(p, what: str = "results folder: writes OUT/<name>/<cell id>/") -> None:
    p.add_argument("--out", default="results", help=what)


def add_name(p) -> None:
    p.add_argument("--name", default=None, metavar="NAME",
                   help="the results folder of this run, OUT/NAME/ [default: the matrix's name]")


def run_name(args, matrix) -> str:
    """The results folder name: --name, else the matrix's name (checked when the matrix was loaded);
    one path component inside --out."""
    from ..run.config.matrix import folder_name

    name = getattr(args, "name", None)
    return matrix.name if name is None else folder_name(name, "--name")


def add_progress_every(p) -> None:
    p.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                   help="when stderr is not a terminal (a log file, a pipe, CI, SLURM): one line per cell every "
                        "SECONDS with its step/total, loss, tok/s, ETA and phase (train, validate, probes, "
                        "checkpoint); 0 = at every step; --quiet: none")


def add_run_options(p) -> None:
    """The options of every command that trains cells (`run`, `ladder`, `sweep`): how results are
    written. Where the cells run is add_launch_options'."""
    add_out(p)
    add_name(p)
    p.add_argument("--force", action="store_true", help="retrain cells that already have a finished record")
    p.add_argument("--loggers", default="csv", help="comma-separated Lightning loggers: csv, tensorboard, wandb")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--ckpt-every", type=int, default=100,
                   help="save a resumable checkpoint every N optimizer steps (0 = never); a killed cell "
                        "resumes from it on the next run")
    add_progress_every(p)
    p.add_argument("--keep-checkpoints", action="store_true", help="keep a finished cell's last checkpoint")
    p.add_argument("--save-weights", action="store_true",
                   help="keep every cell that finishes ok as OUT/<name>/<cell id>/weights/ (model.safetensors, "
                        "config.json, tokenizer); load with models.load_weights or bench.results.weights.load_cell; "
                        "needed by `bench eval`")
    p.add_argument("--wait", action="store_true",
                   help="wait for cells another run is training (claimed in their folder) instead of skipping them; "
                        "with --slurm, wait for the submitted tasks and show the results as a local run does")
    p.add_argument("--stale-after", type=float, default=STALE_AFTER, metavar="SECONDS",
                   help="take over a cell whose claim's heartbeat is older than this (its holder died; on the "
                        "same host a dead pid is noticed at once)")


def run_options(args):
    """RunOptions from the run options; --out resolved against the caller's working directory."""
    from ..run.engine.claims import check_stale_after
    from ..run.config.options import RunOptions

    check_stale_after(getattr(args, "stale_after", STALE_AFTER))  # here, once: not in every --workers child
    out = Path(args.out).expanduser().absolute()
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"--out {args.out}: {existing} is a file, not a folder; name a folder for the results")
    return RunOptions(out=out, force=args.force, loggers=tuple(split_list(args.loggers) or ["csv"]),
                      quiet=args.quiet, ckpt_every=args.ckpt_every,
                      keep_checkpoints=getattr(args, "keep_checkpoints", False), wait=getattr(args, "wait", False),
                      stale_after=getattr(args, "stale_after", STALE_AFTER),
                      save_weights=getattr(args, "save_weights", False),
                      progress_every=None if args.quiet else getattr(args, "progress_every", 30.0),
                      command=("bench", *args.argv) if getattr(args, "argv", None) is not None else ())


SLURM_DEFAULTS = {"partition": None, "cpus_per_task": None, "mem": None, "time": 60, "array_parallelism": 256,
                  "signal_delay": 90}


def add_launch_options(p) -> None:
    """Where the cells of a training command run: here, in local workers, or as SLURM tasks (the one
    launcher, bench.launch.launcher)."""
    g = p.add_argument_group("where the cells run (one at a time in this process, unless --workers or --slurm)")
    g.add_argument("--workers", default="1", metavar="N|auto",
                   help="train N cells at once, each in its own process pinned to --devices-per-cell GPUs "
                        "(CPU: to its share of the cores); auto = one per visible GPU, or one per core on CPU")
    g.add_argument("--devices-per-cell", type=int, default=1, metavar="K",
                   help="devices each cell trains on; K > 1 sets --train.devices K (a DDP/FSDP cell). A worker "
                        "is pinned to K GPUs; a SLURM task asks for K GPUs unless --train.accelerator is cpu")
    g.add_argument("--slurm", action="store_true",
                   help="submit the unfinished cells to SLURM as one job array (submitit; one task per cell, "
                        "requeued and resumed on a time limit or preemption) instead of training them here; "
                        "--out must be on a filesystem the nodes share")
    g.add_argument("--dry-run", action="store_true", help="list the cells to train (or submit); train nothing")
    add_gpu_arg(g)
    s = p.add_argument_group("SLURM resources (with --slurm)")
    s.add_argument("--partition", default=None, metavar="NAME", help="SLURM partition [default: the cluster's default]")
    s.add_argument("--cpus-per-task", type=int, default=None, metavar="N", help="CPUs per task")
    s.add_argument("--mem", default=None, metavar="SIZE", help="memory per task, e.g. 64G")
    s.add_argument("--time", type=int, default=60, metavar="MINUTES",
                   help="time limit per task; a task that reaches it is requeued and resumes")
    s.add_argument("--array-parallelism", type=int, default=256, metavar="M", help="at most M tasks at once")
    s.add_argument("--signal-delay", type=int, default=90, metavar="S",
                   help="seconds before the time limit at which a task checkpoints and requeues")


def launch_options(args):
    """LaunchOptions from the launch options, checked in one line each before any cell is made; a
    --devices-per-cell K > 1 becomes --train.devices K, part of every cell's config (and id)."""
    from ..launch.launcher import LaunchOptions
    from ..launch.slurm import SlurmOptions

    workers = str(args.workers)
    if workers != "auto" and not (workers.isdigit() and int(workers) >= 1):
        raise ConfigError(f"--workers takes a positive integer or 'auto', got {args.workers!r}")
    if args.devices_per_cell < 1:
        raise ConfigError(f"--devices-per-cell must be at least 1, got {args.devices_per_cell}")
    slurm_set = [k for k, v in SLURM_DEFAULTS.items() if getattr(args, k) != v]
    if args.slurm and workers != "1":
        raise ConfigError("--slurm and --workers: choose one (--workers trains here, --slurm submits to SLURM)")
    if slurm_set and not args.slurm:
        raise ConfigError(f"--{slurm_set[0].replace('_', '-')} is a SLURM resource: add --slurm, or drop it")
    if args.devices_per_cell > 1:
        set_override(args, "train.devices", str(args.devices_per_cell))
    slurm = SlurmOptions(**{k: getattr(args, k) for k in SLURM_DEFAULTS}) if args.slurm else None
    return LaunchOptions(workers=workers, devices_per_cell=args.devices_per_cell, slurm=slurm, gpu=args.gpu,
                         dry_run=args.dry_run)


def add_margin(p) -> None:
    from ..results.stats.verdicts import DEFAULT_MARGIN

    p.add_argument("--margin", type=float, default=None, metavar="NATS",
                   help=f"the verdicts' margin of practical relevance: a comparison is 'equivalent' when its "
                        f"difference is shown inside ±NATS of final validation loss (docs/statistics.md, section 4) "
                        f"[default: {DEFAULT_MARGIN}, or the margin a run trained until decided stopped on]")


def add_until_decided(p) -> None:
    g = p.add_argument_group("seeds until decided (docs/verdicts.md: the sequential rule)")
    g.add_argument("--until-decided", action="store_true",
                   help="train in rounds: the cells' seeds first, then one more seed (the group and its baseline) "
                        "for every comparison still undecided, until each is decided (better, worse or equivalent "
                        "within --margin) or has --max-seeds seeds; the verdicts are a sequential design's, which "
                        "keeps the error rate at 0.05 over all rounds, and the folder records it")
    g.add_argument("--max-seeds", type=int, default=None, metavar="K",
                   help="the most seeds (pairs) a comparison gets, fixed before the first round [default: 8, or "
                        "the K the folder was first trained with]")


def add_tune(p) -> None:
    g = p.add_argument_group("tuned comparisons (docs/verdicts.md: 'Tuned comparisons')")
    g.add_argument("--tune", choices=["lr"], default=None,
                   help="tune each arm's learning rate with the same budget (a log-spaced grid around the recipe's "
                        "LR on tuning seeds 1000, 1001, ..., into OUT/NAME-tune/), then compare the arms on fresh "
                        "seeds at their best LRs (OUT/NAME-tuned/); the table gives the verdicts at the shared and "
                        "the tuned LRs and marks 'depends on LR' where they disagree")
    g.add_argument("--tune-points", type=int, default=5, metavar="N", help="learning rates in each arm's grid")
    g.add_argument("--tune-decades", type=float, default=1.0, metavar="D",
                   help="decades the grid spans, centred on the recipe's LR")
    g.add_argument("--tune-seeds", type=int, default=1, metavar="S", help="tuning seeds per grid point")


def tuning_options(args):
    """The tuning budget of --tune lr (None without it); a tuning option without --tune is one line."""
    from ..launch.tuning import Tuning

    if getattr(args, "tune", None) is None:
        given = [o for o, d in (("points", 5), ("decades", 1.0), ("seeds", 1)) if getattr(args, f"tune_{o}") != d]
        if given:
            raise ConfigError(f"--tune-{given[0]} sets the budget of --tune lr: add --tune lr, or drop it")
        return None
    return Tuning(args.tune_points, args.tune_decades, args.tune_seeds)


def show_both_verdicts(name: str, tuned_name: str, opts, margin: float | None, tuning) -> None:
    """--tune lr: every comparison's verdict at the shared LR (OUT/name/) and at the tuned LRs
    (OUT/tuned_name/), each folder read with its own sequential design if it has one."""
    from ..console import out
    from ..results import render
    from ..results.design import read_design
    from ..results.records import load_records
    from ..results.stats.paired import compare
    from ..results.stats.verdicts import DEFAULT_MARGIN
    from ..results.tables.comparisons import tuned_table

    found = []
    for folder in (opts.out / name, opts.out / tuned_name):
        rec = read_design(folder)
        m = margin if margin is not None else (rec.margin if rec else DEFAULT_MARGIN)
        found.append(compare(load_records(folder)[0], None, margin=m, design=rec.design if rec else None))
    lrs = {r.id: r.config.get("train", {}).get("lr") for r in load_records(opts.out / tuned_name)[0]}
    table = tuned_table(*found, lambda ids: (sorted({lrs[i] for i in ids if lrs.get(i)}) or [None])[0],
                        tuning.describe())
    if table is not None:
        render.rich(out, table, render.titled(name, table.title))


def sequential_design(args, folder: Path, seeds: int):
    """The sequential design --until-decided trains ``folder`` under (a K or margin not given: the one
    the folder recorded, else the defaults), checked in one line; None without --until-decided."""
    from ..results.design import Recorded, read_design
    from ..results.stats.sequential import MAX_LOOKS, Design
    from ..results.stats.verdicts import DEFAULT_MARGIN

    if not getattr(args, "until_decided", False):
        if getattr(args, "max_seeds", None) is not None:
            raise ConfigError("--max-seeds sets the design of --until-decided: add --until-decided, or drop it")
        return None
    if getattr(args, "slurm", False) and not getattr(args, "wait", False):
        raise ConfigError("--until-decided with --slurm needs --wait: each round waits for the last one's results")
    have = read_design(folder)
    k = args.max_seeds if args.max_seeds is not None else (have.design.max_seeds if have else 8)
    if not 2 <= k <= MAX_LOOKS:
        raise ConfigError(f"--max-seeds takes 2 to {MAX_LOOKS} seeds, got {k}")
    if seeds > k:
        raise ConfigError(f"--seed lists {seeds} seeds, more than --max-seeds {k}: the first round cannot exceed "
                          "the design")
    margin = args.margin if args.margin is not None else (have.margin if have else DEFAULT_MARGIN)
    return Recorded(Design(k), margin=margin)


def finish_run(matrix_name: str, cells, ran, opts, margin: float | None = None) -> int:
    """The leaderboard of the whole matrix folder (its verdicts within ±``margin``, read with the
    folder's sequential design if it has one), and the exit status of this run's cells."""
    from ..atomic import remove_old_temps
    from ..console import err, out
    from ..results.curves import load_curves
    from ..results.design import read_design
    from ..results.records import load_records
    from ..results.tables.leaderboard import build_leaderboard, print_rich, write_leaderboard

    folder = opts.out / matrix_name
    remove_old_temps(folder)  # left by a table or report write that was killed
    records, problems = load_records(folder)  # the whole matrix folder: a filtered run loses no rows
    ids = {c.id for c in cells}
    curves = load_curves(folder)
    design = read_design(folder)
    board = build_leaderboard(records, matrix_name, curves=curves, margin=margin,
                              sequential=design)  # the tables and their statistics, once
    shown = [r for r in records if r.id in ids] or ran  # the terminal shows this run's cells
    print_rich(board if {r.id for r in shown} == {r.id for r in records}
               else build_leaderboard(shown, matrix_name, curves=curves, margin=margin, sequential=design), out)
    report_problems(p for p in problems if p.path.parent.name not in ids)
    try:
        for path in write_leaderboard(folder, board, console=err):
            out.print(f"wrote {path}")
    except OSError as e:  # the records are safe; only the leaderboard files are not written
        err.print(f"[yellow]warning:[/] could not write the leaderboard in {folder}: {e.strerror or e}; "
                  "`bench table` writes it later", highlight=False, soft_wrap=True)
    done = {r.id for r in ran}
    skipped = sorted(ids - done)
    if skipped:
        err.print(f"[yellow]{len(skipped)} cell(s) left to the run training them:[/] {', '.join(skipped)}")
    bad = [r.id for r in ran if r.status != "ok"]
    if bad:
        err.print(f"[red]{len(bad)} cell(s) did not finish ok:[/] {', '.join(bad)}")
    return 1 if bad else 0


def add_target(p, results_flag: str = "--out") -> None:
    """A results target: a matrix name/YAML (looked up in the results folder) or a results folder."""
    p.add_argument("target", nargs="?", default=None,
                   help="a matrix name/YAML, or a results folder [default: the default matrix]")
    p.add_argument(results_flag, dest="results_root", default="results", metavar="DIR",
                   help="the results folder a matrix name is looked up in")


def target_folder(args) -> Path:
    """A folder as given; else a run's folder under the results folder (`default-ladder`, a --name);
    else the results of the matrix so named."""
    from ..run.config.matrix import load_matrix

    if args.target and Path(args.target).is_dir():
        return Path(args.target)
    if args.target and Path(args.target).is_file() and Path(args.target).suffix not in (".yaml", ".yml"):
        raise ConfigError(f"{args.target} is a file, not a results folder: name a results folder, or a matrix (a name "
                          "in configs/matrix/ or a .yaml file)")
    if args.target and "/" not in args.target and (Path(args.results_root) / args.target).is_dir():
        return Path(args.results_root) / args.target
    return Path(args.results_root) / load_matrix(args.target).name


def report_problems(problems) -> None:
    """One line per record.json that could not be used: never dropped in silence."""
    from ..console import err

    for p in problems:
        err.print(f"[yellow]skipped record[/] {p.path}: {p.reason}", highlight=False, soft_wrap=True)
