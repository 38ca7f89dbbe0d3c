"""The leaderboard (bench/results/tables/leaderboard.py) as a reader gets it: honest statistics (marks
against the baseline, none between cells that learned nothing, a warmup that takes the run), full headers
with units, no rank for unfinished cells, every swept or overridden axis as a column, cost figures with
their noise and the shared-machine flag, time to target; built once, with the paired statistics computed
once, and the same tables in the terminal, Markdown, CSV and LaTeX."""

from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pytest
from rich.console import Console
from scipy import stats as sps

from bench import cli
from bench.errors import ConfigError
from bench.results.curves import parse_curve
from bench.results.records import Record, load_records
from bench.results.stats import paired
from bench.results.stats.groups import summarize
from bench.results.tables import leaderboard as lb
from bench.results.tables.leaderboard import build_leaderboard, cells_table, print_rich, to_csv, to_latex, to_markdown

from ..support import CURVE, latex_tables, untex, write_matrix


def rec(act, seed, loss, norm="pre", status="ok", unigram=26.73, tps=1000.0, max_steps=60, warmup=30, shared=None,
        lr=None, axes=None, scale="nano"):
    d = {"id": f"{scale}-{act}-{norm}-s{seed}" + (f"-lr{lr}" if lr else ""), "scale": scale, "activation": act,
         "norm": norm, "seed": seed, "status": status, "started": f"2026-01-01T00:00:{seed:02d}",
         "metrics": {"val_loss": loss, "val_ppl": math.exp(loss), "tokens_per_sec": tps, "mfu": 0.01,
                     "mfu_basis": "measured fp32 matmul peak of this CPU", "peak_memory_bytes": 2**25,
                     "peak_memory_basis": "peak RSS"} if status == "ok" else {},
         "params": {"total": 1100, "non_embedding": 1000}, "data": {"unigram_ppl": unigram},
         "config": {"seed": seed, "train": {"max_steps": max_steps, "warmup_steps": warmup,
                                            **({"lr": lr} if lr else {})}, "data": {"tokenizer": "bytes"}},
         "axes": axes or {}}
    if shared is not None:
        d["sharing"] = {"load_avg_1m": 3.0, "cpu_count": 2, "threads": 1, "workers": 2, "shared": shared}
    return Record.from_dict(d)


def rich_text(board, width=100) -> str:
    buf = io.StringIO()
    print_rich(board, Console(file=buf, width=width, color_system=None))
    return buf.getvalue()


def pivot_values(board, scale_index=0) -> dict:
    t = board.pivots[scale_index]
    return {(row, c.name): c.value(row) for row in t.rows for c in t.columns[1:]}


# ---- marks, and no marks where nothing was learned ------------------------------------------------

def test_marks_against_the_baseline_and_the_paired_table_are_the_real_tests():
    recs = ([rec("swiglu", s, v, unigram=1e6) for s, v in enumerate((3.00, 3.02, 2.98))]
            + [rec("gelu", s, v, unigram=1e6) for s, v in enumerate((2.80, 2.81, 2.79))]       # clearly better
            + [rec("powlu", s, v, unigram=1e6) for s, v in enumerate((3.30, 3.31, 3.29))]      # clearly worse
            + [rec("relu", s, v, unigram=1e6) for s, v in enumerate((3.00, 3.05, 2.97))]       # same
            + [rec("relu2", 0, 2.0, unigram=1e6)])                                             # one seed
    board = build_leaderboard(recs, "m")
    rows = {r["activation"]: r for r in board.paired.values()}
    texts = {row[1]: dict(zip(board.paired.names, row)) for row in board.paired.texts()}
    assert texts["swiglu"]["result"] == "baseline" and texts["swiglu"]["test"] == "baseline"
    assert texts["gelu"]["result"] == "better *" and texts["powlu"]["result"] == "worse †"
    assert not texts["relu"]["result"].startswith(("better", "worse"))
    assert texts["relu2"]["test"] == "-" and texts["relu2"]["result"] == "undecided (n<3)"
    assert texts["relu2"]["verdict"].startswith("undecided: -1.000 nats; 1 seed tests nothing")
    ref = sps.ttest_rel([2.80, 2.81, 2.79], [3.00, 3.02, 2.98])
    assert rows["gelu"]["p"] == pytest.approx(ref.pvalue) and rows["gelu"]["delta_loss"] == pytest.approx(-0.2)
    assert texts["gelu"]["test"] == f"paired t (t={ref.statistic:.3g}, dof=2)" and texts["gelu"]["n"] == "3 pairs"
    assert texts["relu2"]["n"] == "1 vs 3 !"  # fewer than 3 seeds
    md = to_markdown(board)
    gelu_cell = summarize(np.exp([2.80, 2.81, 2.79]))
    assert f"| gelu | {gelu_cell.mean:.3f} ± {gelu_cell.half_width:.3f} (n=3)* |" in md
    assert "(n=3)† |" in md and "(n=3) (base) |" in md and "| relu2 | 7.389 (n=1) |" in md
    assert "Welch's t-test" in md and "p < 0.05" in md
    # another baseline: gelu is now the reference, swiglu significantly worse than it
    board = build_leaderboard(recs, "m", baseline="gelu:pre")
    cell = pivot_values(board)[("swiglu", "pre")]
    assert cell.comparison.baseline == ("gelu", "pre") and cell.comparison.mark == "†"
    texts = {row[1]: dict(zip(board.paired.names, row))["result"] for row in board.paired.texts()}
    assert texts["gelu"] == "baseline" and texts["powlu"] == "worse †"


def test_not_learned_groups_get_no_mark_and_one_line_says_why():
    """The reported case: 60 nano steps, swiglu 28.05, polynorm 25.80, powlu 28.60 PPL against a unigram
    reference of 26.73; powlu's seeds differ consistently (a tiny p), so it would get a mark."""
    recs = [rec(act, s, math.log(ppl) + 0.001 * s + (0.0001 * s * s if act == "powlu" else 0))
            for act, ppl in (("swiglu", 28.05), ("polynorm", 25.80), ("powlu", 28.60)) for s in range(3)]
    md = to_markdown(build_leaderboard(recs, "m"))
    pivot = [ln for ln in md.splitlines() if ln.startswith(("| swiglu |", "| polynorm |", "| powlu |"))][:3]
    assert len(pivot) == 3 and not any(m in ln for ln in pivot for m in "*†")
    assert "No marks: no group learned beyond token frequencies" in md
    assert ("Not learned (every cell): 3 group(s) end no more than 0.1 nats below the unigram reference (or the "
            "loss at init): swiglu / pre (nano), polynorm / pre (nano), powlu / pre (nano); likely too few steps "
            "(60 optimizer steps), with warmup taking 50% of the run.") in md
    assert "Warning: warmup takes more than 25% of the run in 9 cell(s) (up to 50%)" in md
    assert md.count("| not learned |") == 2
    # the same numbers 0.5 nats lower have learned: the marks come back
    learned = [Record.from_dict({**r.to_dict(), "data": {"unigram_ppl": 26.73 * math.e}}) for r in recs]
    md = to_markdown(build_leaderboard(learned, "m"))
    assert "Not learned" not in md and "| powlu | 28.6" in md and "†" in md


def test_pivot_mean_ci_order_and_pooling():
    def r(act, norm, seed, ppl, status="ok", **config):
        return Record.from_dict({"id": f"{act}-{norm}-{seed}" + "".join(f"-{k}{v}" for k, v in config.items()),
                                 "scale": "micro", "activation": act,
                                 "norm": norm, "seed": seed, "status": status, "metrics": {"val_ppl": ppl},
                                 "config": {"seed": seed, "train": config, "data": {"tokenizer": "bytes"}},
                                 "data": {"unigram_ppl": 30.0, "tokenizer_fingerprint": "abcdef123"}})
    recs = [r("swiglu", "pre", 0, 10.0), r("swiglu", "pre", 1, 12.0), r("gelu", "pre", 0, 9.0),
            r("gelu", "pre+gpas", 0, None, status="diverged")]
    board = build_leaderboard(recs, "m")
    (p,) = board.pivots
    assert p.rows == ("swiglu", "gelu") and p.names == ["activation", "pre", "pre+gpas"]
    cells = pivot_values(board)
    s = cells[("swiglu", "pre")].summary
    assert (s.mean, s.n) == (11.0, 2) and s.std == pytest.approx(math.sqrt(2))
    assert s.half_width == pytest.approx(12.706204736174698)  # t(0.975, 1 dof) * sqrt(2) / sqrt(2)
    assert cells[("gelu", "pre")].summary.half_width is None and cells[("gelu", "pre+gpas")].summary is None
    assert cells[("swiglu", "pre")].comparison.is_baseline  # first row x first column
    md = to_markdown(board)
    assert "| swiglu | 11.000 ± 12.706 (n=2) (base) | - |" in md
    assert "| gelu | 9.000 (n=1) | - |" in md  # n=1: no interval, and no test possible -> no mark
    assert "No significance test was possible here" in md and "unigram PPL" in md and "30.000" in md
    assert [v["val_ppl"] for v in board.cells.values()] == [9.0, 10.0, 12.0, None]
    assert to_csv(board).splitlines()[1].startswith("1,gelu-pre-0")
    # only seed repeats pool: a config field that differs splits the row
    a, b, c = r("swiglu", "pre", 0, 10.0, compile=False), r("swiglu", "pre", 1, 12.0, compile=False), \
        r("swiglu", "pre", 0, 5.0, compile=True)
    cells = pivot_values(build_leaderboard([a, b, c], "m"))
    assert cells[("swiglu [train.compile=False]", "pre")].summary.n == 2
    assert cells[("swiglu [train.compile=True]", "pre")].summary.mean == 5.0


def test_baseline_errors_and_a_scale_without_the_baseline():
    recs = [rec("swiglu", 0, 3.0), rec("swiglu", 1, 3.1)]
    with pytest.raises(ConfigError, match="valid: swiglu:pre"):
        build_leaderboard(recs, "m", baseline="gelu:pre")
    with pytest.raises(ConfigError, match="ACTIVATION:NORM"):
        build_leaderboard(recs, "m", baseline="swiglu")
    recs = [rec("gelu", s, 3.0 + s / 10, scale="micro") for s in range(2)] + \
           [rec("swiglu", s, 3.0 + s / 10) for s in range(2)]
    board = build_leaderboard(recs, "m", baseline="swiglu:pre")
    assert [t.title.split(":")[0] for t in board.pivots] == ["micro", "nano"]
    assert all(c.comparison is None for c in pivot_values(board).values())  # micro has no swiglu: no marks
    assert "micro: the baseline is not among its cells; no marks" in board.pivots[0].legend


def test_the_paired_statistics_are_computed_once_per_leaderboard(monkeypatch):
    """One build, every format rendered, the terminal too: one call of the tests."""
    calls = []
    real = paired.compare
    monkeypatch.setattr(lb, "compare", lambda *a, **k: calls.append(1) or real(*a, **k))
    recs = [rec(act, s, v + s / 100, unigram=1e6) for act, v in (("swiglu", 3.0), ("gelu", 2.9)) for s in range(3)]
    board = build_leaderboard(recs, "m")
    for render in (to_markdown, to_csv, to_latex, rich_text):
        render(board)
    assert calls == [1]


# ---- every cell -----------------------------------------------------------------------------------

def test_unfinished_cells_have_no_rank():
    recs = [rec("swiglu", 0, 2.0), rec("gelu", 0, 2.1), rec("powlu", 0, None, status="interrupted"),
            rec("relu", 0, None, status="failed")]
    assert [(v["activation"], v["rank"]) for v in cells_table(recs).values()] == [
        ("swiglu", 1), ("gelu", 2), ("powlu", None), ("relu", None)]


def test_terminal_table_has_full_headers_units_and_the_mfu_basis():
    board = build_leaderboard([rec("swiglu", s, 2.0 + s / 100, unigram=60.0) for s in range(2)], "m")
    narrow = rich_text(board, 100)
    assert "…" not in narrow and "tokens_per_" not in narrow  # folded on a narrow terminal, never cut
    text = rich_text(board, 260)
    flat = " ".join(text.split())
    for h in ("tokens/s", "tokens/s spread (SD over seeds, %)", "MFU (%)", "peak memory (MiB)", "wall time (s)"):
        assert h in text, h
    assert "MFU is against: measured fp32 matmul peak of this CPU. Peak memory is peak RSS." in flat
    assert "nano-swiglu-pre-s0" not in text and "non-embedding" not in text  # the file's columns only


def test_every_swept_or_overridden_axis_is_a_column():
    recs = [rec("swiglu", 0, 2.0, lr=1e-3, axes={"train.lr": 1e-3}, unigram=60.0),
            rec("swiglu", 0, 2.2, lr=1e-2, axes={"train.lr": 1e-2}, unigram=60.0)]
    board = build_leaderboard(recs, "m")
    md = to_markdown(board)
    assert "| rank | id | scale | train.lr | activation |" in md
    assert "| 1 | nano-swiglu-pre-s0-lr0.001 | nano | 0.001 | swiglu |" in md
    assert "train.lr" in " ".join(rich_text(board, 160).split())


def test_cost_columns_carry_their_noise_and_the_shared_machine_flag():
    recs = [rec("swiglu", 0, 2.0, tps=4989.0, unigram=60.0, shared=True),
            rec("swiglu", 1, 2.01, tps=8179.0, unigram=60.0, shared=False)]
    rows = {v["seed"]: v for v in cells_table(recs).values()}
    sd = math.sqrt(((4989 - 6584) ** 2 + (8179 - 6584) ** 2) / 1) / 6584
    assert rows[0]["tokens_per_sec_spread"] == rows[1]["tokens_per_sec_spread"] == pytest.approx(sd)
    assert rows[0]["shared"] == "yes" and rows[1]["shared"] is None
    board = build_leaderboard(recs, "m")
    md = to_markdown(board)
    assert "| tokens_per_sec | tokens_per_sec_spread | shared |" in md and f"| {100 * sd:.2f}% | yes |" in md
    line = ("Cost figures are noisy here: 1 cell(s) were measured while sharing the machine (shared machine: yes); "
            f"tokens/s varies by up to {sd:.0%} (SD over seeds, as a share of the mean); for clean cost figures run "
            "`bench cost`")
    assert line in md and line in " ".join(rich_text(board, 200).split())
    old = build_leaderboard([rec("swiglu", s, 2.0, tps=1000.0 + s, unigram=60.0) for s in range(2)], "m")
    md = to_markdown(old)
    assert "Cost figures are noisy" not in md and "| yes |" not in md


def test_the_validation_share_is_a_column_and_warns():
    recs = [rec("swiglu", 0, 2.0, unigram=60.0), rec("gelu", 0, 2.1, unigram=60.0)]
    recs[0].metrics.eval_share, recs[1].metrics.eval_share = 0.12, 0.45
    rows = {v["activation"]: v for v in cells_table(recs).values()}
    assert rows["gelu"]["eval_share"] == 0.45 and rows["swiglu"]["eval_share"] == 0.12
    board = build_leaderboard(recs, "m")
    md = to_markdown(board)
    assert "Warning: validation took more than 30% of the fit time in 1 cell(s)" in md and "| 45.00% |" in md
    text = rich_text(board, 300)
    assert "validation share of fit time (%)" in text and "Warning: validation took" in text


def timed(tokens=30 * 1000, steps=30, train_seconds=12.0):
    return Record.from_dict({"id": "micro-swiglu-pre-s0", "scale": "micro", "activation": "swiglu", "norm": "pre",
                             "seed": 0, "status": "ok",
                             "metrics": {"val_loss": 2.4, "val_ppl": math.exp(2.4), "tokens": tokens, "steps": steps,
                                         "train_seconds": train_seconds},
                             "config": {"seed": 0, "model": {"block_size": 10}, "train": {"batch_size": 100}}})


def test_time_to_target_columns():
    r = timed()
    curves = {r.id: parse_curve(CURVE)}
    (row,) = cells_table([r], target=3.0, curves=curves).values()
    assert row["tokens_to_target"] == 20_000 and row["seconds_to_target"] == pytest.approx(8.0)
    board = build_leaderboard([r], "m", target=3.0, curves=curves)
    md = to_markdown(board)
    assert "tokens_to_target | seconds_to_target |" in md and "| 20,000 | ~8 |" in md  # '~': estimated seconds
    assert to_csv(board).splitlines()[1].endswith(",20000,8.0")
    assert "| not reached | not reached |" in to_markdown(build_leaderboard([r], "m", target=1.0, curves=curves))
    assert "no curve" in to_markdown(build_leaderboard([r], "m", target=1.0, curves={}))
    assert "tokens_to_target" not in to_markdown(build_leaderboard([r], "m"))


# ---- the formats, from one matrix ----------------------------------------------------------------

def test_latex_has_booktabs_cis_marks_and_footnotes_every_text_escaped(tmp_path, capsys):
    folder, _ = write_matrix(tmp_path, with_probes=False)
    assert cli.main(["table", str(folder), "--format", "latex", "--target-loss", "3.2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("% synth: leaderboard\n% needs \\usepackage{booktabs}")
    tabs = latex_tables(text)
    assert text.count("\\begin{table}") == text.count("\\end{table}") == len(tabs)
    for t in tabs:  # every row has as many cells as the column spec, and no text is left unescaped
        assert all(len(row) == len(t["spec"]) for row in t["rows"]), t["caption"]
        for c in [c for row in t["rows"] for c in row] + [t["caption"]] + t["foot"].split(r"\par"):
            untex(c.replace(r"\par", ""))
    pivots = [t for t in tabs if "final validation PPL" in t["caption"]]
    assert [t["caption"].split(": ")[0] for t in pivots] == ["synth, nano", "synth, micro"]
    assert "\\label{tab:synth-nano-ppl}" in pivots[0]["block"]
    nano = {row[0]: row[1:] for row in pivots[0]["rows"][1:]}
    assert pivots[0]["rows"][0] == ["activation", "pre", "pre+gpas"]
    # mean ± CI (n) with the marks: swiglu/pre+gpas better, powlu worse, swiglu/pre the baseline
    assert re.fullmatch(r"\d+\.\d{3} \$\\pm\$ \d+\.\d{3} \(n=3\) \(base\)", nano["swiglu"][0])
    assert nano["swiglu"][1].endswith("(n=3)$^{*}$") and nano["powlu"][0].endswith("(n=3)$^{\\dagger}$")
    assert "Holm-corrected" in pivots[0]["foot"] and "p \\textless{} 0.05" in pivots[0]["foot"]
    paired_t = next(t for t in tabs if "paired statistics" in t["caption"])
    assert paired_t["rows"][0][:3] == ["scale", "activation", "norm"] and "delta\\_loss" in paired_t["rows"][0]
    assert "\\resizebox{\\textwidth}" in paired_t["block"]
    assert any(t["caption"].endswith("rankings at equal steps, equal compute and equal time") for t in tabs)
    long = tabs[-1]
    records, _ = load_records(folder)
    board = lb.folder_leaderboard(folder, records, "synth", target=3.2)
    assert len(long["rows"]) == 1 + len(records) and len(long["spec"]) == len(board.cells.columns)
    assert "MFU (\\%)" in long["rows"][0] and "tokens to target" in long["rows"][0]
    assert all(c.endswith("\\%") for c in (row[long["rows"][0].index("MFU (\\%)")] for row in long["rows"][1:]))
    assert any("pre\\_gpas" in c for row in long["rows"] for c in row)  # the cell ids' underscores
    assert "MFU is against: test" in long["foot"] and "Time to target" in long["foot"]


@pytest.mark.parametrize("argv, message", [
    (["--ladder"], "--ladder prints rich or md, not latex"),
    (["--at", "steps=1e9"], "is outside every cell's validation curve"),
    (["--at", "tokens=5"], "valid axes: steps, flops, seconds"),
    (["--baseline", "swiglu"], "ACTIVATION:NORM"),
])
def test_table_errors_are_one_line_before_any_output(tmp_path, capsys, argv, message):
    folder, _ = write_matrix(tmp_path, with_probes=False, scales=("nano",), seeds=(0,))
    assert cli.main(["table", str(folder), "--format", "latex", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err and len(err.strip().splitlines()) == 1
    assert not (folder / "leaderboard.md").exists()


def test_every_format_from_the_cli_and_the_files_beside_the_records(tmp_path, capsys):
    folder, _ = write_matrix(tmp_path, with_probes=False, scales=("nano",))
    assert cli.main(["table", str(folder), "--format", "md", "--at", "seconds"]) == 0
    md = capsys.readouterr().out
    assert md == (folder / "leaderboard.md").read_text()  # what it prints is what it writes
    assert "## Ranking at equal time (training seconds)" in md and "## Paired statistics against the baseline" in md
    assert cli.main(["table", str(folder), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == (folder / "leaderboard.csv").read_text().splitlines()
    assert cli.main(["table", str(folder)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "synth: paired statistics against the baseline" in out and "synth, nano: final validation PPL" in out
    with pytest.raises(SystemExit):
        cli.main(["table", "--help"])
    help_text = capsys.readouterr().out
    assert "latex" in help_text and "booktabs" in help_text


def test_a_leaderboard_listing_lost_cells_is_kept(tmp_path):
    folder, _ = write_matrix(tmp_path, with_probes=False, scales=("nano",), seeds=(0,))
    records, _ = load_records(folder)
    lb.write_leaderboard(folder, build_leaderboard(records, "synth"))
    buf = io.StringIO()
    written = lb.write_leaderboard(folder, build_leaderboard(records[1:], "synth"), Console(file=buf))
    assert [p.name for p in written] == ["leaderboard.new.md", "leaderboard.new.csv"]
    assert records[0].id in (folder / "leaderboard.csv").read_text() and "kept it" in buf.getvalue()


def test_downstream_accuracy_is_a_table_of_its_own_and_columns_of_the_cells():
    recs = [rec("swiglu", s, 2.0, unigram=60.0) for s in range(2)]
    recs[0].extra["eval"] = {"arc": {"acc": 0.25, "n": 4}, "hs": {"acc_norm": 0.5, "n": 2}}
    board = build_leaderboard(recs, "m")
    assert board.downstream.values() == [{"cell": recs[0].id, "activation": "swiglu", "norm": "pre",
                                          "precision": None, "arc:acc": 0.25, "hs:acc": 0.5, "n": "4, 2"}]
    assert [v["arc:acc"] for v in board.cells.values()] == [0.25, None]
    md = to_markdown(board)
    assert "## Downstream accuracy (lm-evaluation-harness, zero-shot unless noted)" in md
    assert f"| {recs[0].id} | swiglu | pre | - | 0.2500 | 0.5000 | 4, 2 |" in md


def test_a_sweeps_tables_show_the_failed_point():
    def point(lr, seed, loss=3.0, status="ok", error=None):
        return Record.from_dict({
            "id": f"nano-swiglu-pre-lr{lr}-s{seed}", "scale": "nano", "activation": "swiglu", "norm": "pre",
            "seed": seed, "status": status, "error": error, "data": {"vocab_size": 256, "unigram_ppl": 30.0},
            "metrics": {"val_loss": loss, "val_ppl": math.exp(loss), "init_val_loss": 5.7} if status == "ok" else {},
            "config": {"seed": seed, "train": {"lr": lr}, "data": {"tokenizer": "bytes"}}, "axes": {"train.lr": lr}})
    recs = [point(lr, s, loss) for lr, loss in ((1e-3, 3.0), (3e-3, 3.5)) for s in (0, 1)]
    recs += [point(3e-4, s, status="oom", error="CUDA out of memory. Tried to allocate 2.0 GiB\nmore") for s in (0, 1)]
    board = build_leaderboard(recs, "default-lr")
    md = to_markdown(board)
    grid = md[md.index("### Every grid point"):]
    assert "| nano | swiglu | pre | 0.0003 | 2 | - | no | failed (oom 2/2): CUDA out of memory" in grid
    text = rich_text(board, 250)
    assert "every grid point" in text and "failed (oom 2/2)" in text and "failed_at" in text


def test_records_changed_on_disk_reach_the_table(tmp_path, capsys):
    """A sanity check of the whole path: the pivot reads the record files' numbers, not a cache."""
    folder, _ = write_matrix(tmp_path, with_probes=False, scales=("nano",), seeds=(0,))
    path = next(folder.glob("nano-swiglu-pre-s0-*/record.json"))
    data = json.loads(path.read_text())
    data["metrics"]["val_ppl"] = 123.456
    path.write_text(json.dumps(data))
    assert cli.main(["table", str(folder), "--format", "md"]) == 0
    assert "| swiglu | 123.456 (n=1) (base) |" in capsys.readouterr().out


def test_a_new_column_is_one_entry_and_reaches_every_format(monkeypatch):
    recs = [rec("swiglu", s, 2.0 + s / 100, unigram=60.0) for s in range(2)]
    for r in recs:
        r.metrics.ood_loss = 2.5
    monkeypatch.setattr(lb, "CELL_COLUMNS", (*lb.CELL_COLUMNS,
                                             lb.Column("ood_loss", "OOD loss (nats)", lb._metric("ood_loss"), ".4f")))
    board = build_leaderboard(recs, "m")
    assert "| ood_loss |" in to_markdown(board) and "| 2.5000 |" in to_markdown(board)
    assert to_csv(board).splitlines()[0].endswith(",ood_loss") and to_csv(board).splitlines()[1].endswith(",2.5")
    assert "OOD loss (nats)" in to_latex(board) and "OOD loss (nats)" in " ".join(rich_text(board, 300).split())
    from bench.results.report import render_html

    assert '<th title="OOD loss (nats)">ood_loss</th>' in render_html(recs, "m")
