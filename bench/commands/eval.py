"""`bench eval`: downstream accuracy of every finished cell through lm-evaluation-harness, on local
data; the evaluation is bench.results.eval's."""

from __future__ import annotations

from .common import add_target, target_folder

HELP = "downstream accuracy of every finished cell (lm-evaluation-harness, local data)"


def add_parser(sub):
    p = sub.add_parser("eval", help=HELP)
    add_target(p, "--out")
    p.add_argument("--tasks", required=True, help="comma-separated lm-eval task names (e.g. from --include-path)")
    p.add_argument("--include-path", default=None, metavar="DIR",
                   help="folder of lm-eval task YAMLs over local files (dataset_path: json + data_files); "
                        "see docs/eval.md")
    p.add_argument("--builtin-tasks", action="store_true",
                   help="also load lm-eval's own task configs (their datasets must already be in the local HF cache: "
                        "nothing is downloaded)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N examples of each task")
    p.add_argument("--num-fewshot", type=int, default=None, help="few-shot examples per prompt (task default if unset)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per forward")
    p.add_argument("--device", default="cpu", help="torch device for the evaluated model (cpu, cuda, cuda:1)")
    p.add_argument("--force", action="store_true", help="re-evaluate cells that already hold these tasks")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(args) -> int:
    from ..console import err, out
    from ..errors import ConfigError, need
    from ..results.eval import check_tasks, eval_matrix, task_manager
    from ..results.records import load_records
    from ..results.tables.leaderboard import folder_leaderboard, print_rich, write_leaderboard

    need("lm_eval", "bench eval")  # only looked for: lm-eval is imported after the offline settings

    tasks = [t.strip() for t in (args.tasks or "").split(",") if t.strip()]
    if not tasks:
        raise ConfigError("--tasks takes comma-separated lm-eval task names")
    target = target_folder(args)
    if not load_records(target)[0]:
        raise ConfigError(f"no finished cells under {target} (run `bench run --save-weights` first)")
    tm = task_manager(args.include_path, args.builtin_tasks)
    check_tasks(tm, tasks)
    records, no_weights = eval_matrix(target, tasks, tm, limit=args.limit, batch_size=args.batch_size,
                                      device=args.device, num_fewshot=args.num_fewshot, force=args.force,
                                      console=None if args.quiet else err)
    if no_weights:
        err.print(f"[yellow]{len(no_weights)} ok cell(s) have no saved weights (rerun them with "
                  f"`bench run --save-weights --force`):[/] {', '.join(no_weights)}")
    board = folder_leaderboard(target, records, target.name)
    print_rich(board, out)
    for path in write_leaderboard(target, board, console=err):
        out.print(f"wrote {path}")
    return 0
