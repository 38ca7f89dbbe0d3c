"""What several commands share: the matrix filters and --section.field overrides, the run options of
`run` and `sweep`, the one way `table`, `report` and `eval` name a results target, and the help
formatter. Nothing here imports torch at module level: `bench --help` stays fast."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError, short


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
    """The options of every command that trains cells (`run`, `sweep`)."""
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
                   help="wait for cells another run is training (claimed in their folder) instead of skipping them")
    p.add_argument("--stale-after", type=float, default=300.0, metavar="SECONDS",
                   help="take over a cell whose claim's heartbeat is older than this (its holder died; on the "
                        "same host a dead pid is noticed at once)")


def run_options(args):
    """RunOptions from the run options; --out resolved against the caller's working directory."""
    from ..run.engine.claims import check_stale_after
    from ..run.engine.runner import RunOptions

    check_stale_after(getattr(args, "stale_after", 300.0))  # here, once: not in every --workers child
    out = Path(args.out).expanduser().absolute()
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"--out {args.out}: {existing} is a file, not a folder; name a folder for the results")
    return RunOptions(out=out, force=args.force, loggers=tuple(split_list(args.loggers) or ["csv"]),
                      quiet=args.quiet, ckpt_every=args.ckpt_every,
                      keep_checkpoints=getattr(args, "keep_checkpoints", False), wait=getattr(args, "wait", False),
                      stale_after=getattr(args, "stale_after", 300.0),
                      save_weights=getattr(args, "save_weights", False),
                      progress_every=None if args.quiet else getattr(args, "progress_every", 30.0))


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
