"""`bench eval`: downstream accuracy of every finished cell through lm-evaluation-harness.

    bench run nano-precision --save-weights
    bench eval nano-precision --tasks my_arc_easy --include-path ~/eval-tasks

Each cell with saved weights (``bench run --save-weights``) is wrapped as an lm-eval model
(lm_adapter.CellLM) and run on the tasks; the accuracies go into the cell's record.json under
``eval`` ({task: {"acc", "acc_norm", "acc_stderr", "n", ...}}) and from there into the leaderboard
(one ``<task>:acc`` column per task) and the report. Nothing downloads: HF_DATASETS_OFFLINE and
HF_HUB_OFFLINE are set before lm-eval is imported, so tasks must read local files (custom task
YAMLs with ``dataset_path: json`` and ``data_files``; see docs/eval.md).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from ..errors import ConfigError
from ..resources import configs_dir
from .records import cell_dir, load_records, read_record, write_json

ROOT_EVAL_TASKS = configs_dir() / "eval"  # local_arc_easy, ... (docs/eval.md)
OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
METRICS = ("acc", "acc_norm", "perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte")


def offline() -> None:
    """No download at run time (must run before datasets / lm_eval are imported to take effect)."""
    for k, v in OFFLINE.items():
        os.environ[k] = v


def task_manager(include_path: str | None, builtin: bool = False):
    """lm-eval's TaskManager over the user's task folder (and lm-eval's own tasks if ``builtin``)."""
    offline()
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ConfigError("bench eval needs lm-evaluation-harness: pip install '.[eval]' "
                          "(or pip install lm-eval)") from None

    if include_path is not None and not Path(include_path).expanduser().is_dir():
        raise ConfigError(f"--include-path: no such folder {include_path}")
    if include_path is None and not builtin:
        raise ConfigError("no tasks to load: give --include-path DIR (task YAMLs over local files, see docs/eval.md) "
                          "or --builtin-tasks (lm-eval's own tasks; their data must already be in the local HF cache)")
    path = str(Path(include_path).expanduser()) if include_path else None
    return TaskManager(include_path=path, include_defaults=builtin)


def check_tasks(tm, tasks: list[str]) -> None:
    known = set(tm.all_tasks)
    missing = [t for t in tasks if t not in known]
    if missing:
        from models import check_choice

        check_choice("lm-eval task", missing[0], sorted(known))


def parse_results(results: dict) -> dict[str, dict]:
    """lm-eval's {'results': {task: {'acc,none': x, 'acc_stderr,none': s, ...}}, 'n-samples': ...}
    -> {task: {'acc': x, 'acc_stderr': s, ..., 'n': examples}} (filter suffix dropped)."""
    out = {}
    n = results.get("n-samples") or {}
    for task, values in (results.get("results") or {}).items():
        row = {}
        for key, v in values.items():
            name, _, _ = key.partition(",")
            if isinstance(v, (int, float)) and (name in METRICS or name.removesuffix("_stderr") in METRICS):
                row[name] = float(v)
        if task in n:
            row["n"] = int(n[task].get("effective", 0))
        out[task] = row
    return out


def evaluate_cell(cell_folder: Path, tasks: list[str], tm, limit: int | None = None, batch_size: int = 16,
                  device: str = "cpu", num_fewshot: int | None = None) -> dict[str, dict]:
    """{task: metrics} of one cell's saved weights."""
    offline()
    import lm_eval

    from .lm_adapter import CellLM

    lm = CellLM(cell=str(cell_folder), batch_size=batch_size, device=device)
    res = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), task_manager=tm, limit=limit, num_fewshot=num_fewshot,
                                  bootstrap_iters=0, log_samples=False, verbosity="ERROR")
    return parse_results(res or {})


def add_eval(record: dict, scores: dict[str, dict], meta: dict) -> dict:
    """The record with ``scores`` merged into record['eval'] (earlier tasks kept)."""
    ev = dict(record.get("eval") or {})
    ev.update(scores)
    record["eval"] = ev
    record["eval_meta"] = {**(record.get("eval_meta") or {}), **{t: meta for t in scores}}
    return record


def eval_matrix(folder: Path, tasks: list[str], tm, *, limit=None, batch_size=16, device="cpu", num_fewshot=None,
                force=False, console=None) -> tuple[list[dict], list[str]]:
    """Evaluate every ok cell with weights under ``folder``; returns (records, ids skipped for lack
    of weights). Cells already holding every task are skipped unless ``force``."""
    import lm_eval
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .weights import has_weights

    records, _ = load_records(folder)
    todo, no_weights = [], []
    for r in records:
        cdir = cell_dir(folder.parent, folder.name, r.id)
        if r.status != "ok":
            continue
        if not has_weights(cdir):
            no_weights.append(r.id)
        elif force or not all(t in (r.extra.get("eval") or {}) for t in tasks):
            todo.append((r, cdir))
    meta = {"lm_eval_version": lm_eval.__version__, "limit": limit, "num_fewshot": num_fewshot, "device": device,
            "evaluated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=console is None) as progress:
        bar = progress.add_task(f"eval {', '.join(tasks)}", total=len(todo))
        for r, cdir in todo:
            scores = evaluate_cell(cdir, tasks, tm, limit, batch_size, device, num_fewshot)
            fresh, _ = read_record(cdir / "record.json")  # re-read: never overwrite a newer record
            write_json(cdir / "record.json", add_eval((fresh or r).to_dict(), scores, meta))
            progress.advance(bar)
    return load_records(folder)[0], no_weights
