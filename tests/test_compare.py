"""The equal-steps / FLOPs / time views, paired statistics with Holm's correction, and
learning-rate robustness, on synthetic records whose answers are known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.results.lr import lr_curves, lr_rows
from bench.results.paired import (PAIRED, WELCH, bootstrap_ci, cohens_dz, compare, hedges_g, holm, paired_t,
                                  seed_noise, welch_t)
from bench.results.records import Record
from bench.results.curves import parse_curve
from bench.results.views import (cell_curve, cumulative, disagreements, interpolate, parse_budget, three_views, view)


def record(act, seed=0, loss=3.0, status="ok", steps=200, fpb=1e9, train_seconds=200.0, norm="pre", lr=3e-3,
           scale="nano", vocab=256, accum=1):
    return Record.from_dict({"id": f"{scale}-{act}-{norm}-lr{lr}-s{seed}", "scale": scale, "activation": act,
            "norm": norm, "seed": seed, "status": status,
            "metrics": ({"val_loss": loss, "val_ppl": math.exp(loss), "steps": steps, "tokens": steps * 64,
                         "flops_per_batch": fpb, "train_seconds": train_seconds} if status == "ok" else {"steps": 3}),
            "params": {"total": 1100, "non_embedding": 1000}, "data": {"vocab_size": vocab},
            "config": {"seed": seed, "model": {"block_size": 8}, "train": {"batch_size": 8, "grad_accum": accum,
                                                                            "lr": lr},
                       "data": {"tokenizer": "bytes"}},
            "started": f"2026-01-01T00:00:{seed:02d}"})


def csv_curve(points, seconds_per_step=None) -> dict:
    """points: [(steps done, val loss)] -> a parsed metrics.csv (logged step = steps done - 1)."""
    rows = ["epoch,step,time/train_seconds,train/loss,val/loss"]
    for s, v in points:
        t = "" if seconds_per_step is None else f"{s * seconds_per_step}"
        rows.append(f"0,{s - 1},{t},,{v}")
    return parse_curve("\n".join(rows) + "\n")


# ---- views: a slow cell that wins at equal steps and loses at equal time ---------------------------

STEPS = [40, 80, 120, 160, 200]


def fast(s):  # loss linear in ln(step): log-x interpolation is exact for both cells
    return 5.0 - 0.5 * math.log(s)


def slow(s):  # 0.1 nats better at every step, but twice the FLOPs and seconds per step
    return 4.9 - 0.5 * math.log(s)


@pytest.fixture
def two_cells():
    recs = [record("fast", loss=fast(200), fpb=1e9, train_seconds=200.0),
            record("slow", loss=slow(200), fpb=2e9, train_seconds=400.0)]
    curves = {recs[0].id: csv_curve([(s, fast(s)) for s in STEPS], 1.0),
              recs[1].id: csv_curve([(s, slow(s)) for s in STEPS], 2.0)}
    return recs, curves


def test_slow_cell_wins_at_equal_steps_and_loses_at_equal_time(two_cells):
    recs, curves = two_cells
    views = three_views(recs, curves)
    by = {axis: {g.group[0]: g for g in v.groups} for axis, v in views.items()}
    # equal steps: both at 200 steps (the default budget: the largest every cell reached)
    assert views["steps"].budgets == {"nano": 200}
    assert by["steps"]["slow"].loss == pytest.approx(slow(200)) and by["steps"]["slow"].rank == 1
    # equal time: 200 s = the fast cell's end = the slow cell's step 100 (between validations 80 and 120)
    assert views["seconds"].budgets == {"nano": 200.0}
    assert by["seconds"]["fast"].loss == pytest.approx(fast(200))
    assert by["seconds"]["slow"].loss == pytest.approx(slow(100))
    assert by["seconds"]["fast"].rank == 1 and by["seconds"]["slow"].rank == 2
    assert by["seconds"]["slow"].loss - by["seconds"]["fast"].loss == pytest.approx(-0.1 + 0.5 * math.log(2))
    # equal compute: 2e11 FLOPs, the same answer as time here (FLOPs/step and s/step both doubled)
    assert views["flops"].budgets == {"nano": pytest.approx(200 * 1e9)}
    assert by["flops"]["slow"].loss == pytest.approx(slow(100)) and by["flops"]["fast"].rank == 1
    (d,) = disagreements(views)
    assert set(d.changed) == {("fast", "pre"), ("slow", "pre")}
    assert d.winners == {"steps": ("slow", "pre"), "flops": ("fast", "pre"), "seconds": ("fast", "pre")}
    assert d.tau[("steps", "seconds")] == pytest.approx(-1.0) and d.tau[("flops", "seconds")] == pytest.approx(1.0)


def test_explicit_budget_and_nothing_extrapolated(two_cells):
    recs, curves = two_cells
    v = view(recs, curves, "seconds", 300.0)  # beyond the fast cell's 200 s: it has no value there
    by = {g.group[0]: g for g in v.groups}
    assert by["fast"].loss is None and by["fast"].rank is None and by["fast"].n == 0
    assert by["slow"].loss == pytest.approx(slow(150)) and by["slow"].rank == 1
    v = view(recs, curves, "steps", 10)  # before the first validation (40 steps)
    assert all(g.loss is None for g in v.groups)


def test_time_stamps_made_cumulative_across_a_resume():
    assert cumulative([1.0, 2.0, 0.5, 1.5]) == [1.0, 2.0, 2.5, 3.5]
    assert cumulative([1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]


def test_interpolation_is_linear_in_log_x():
    assert interpolate([10, 1000], [3.0, 1.0], 100) == pytest.approx(2.0)
    assert interpolate([10, 1000], [3.0, 1.0], 10) == 3.0 and interpolate([10, 1000], [3.0, 1.0], 1000) == 1.0
    assert interpolate([10, 1000], [3.0, 1.0], 9) is None and interpolate([10, 1000], [3.0, 1.0], 1001) is None


def test_seconds_are_estimated_without_a_time_column():
    r = record("a", train_seconds=100.0, steps=200)
    c = cell_curve(r, csv_curve([(100, 3.0), (200, 2.5)]))
    assert c.seconds == [50.0, 100.0] and c.seconds_estimated
    assert c.flops == [100 * 1e9, 200 * 1e9]
    r2 = record("b", accum=4)
    assert cell_curve(r2, csv_curve([(100, 3.0)])).flops == [100 * 4 * 1e9]  # FLOPs per micro-batch x accum
    assert cell_curve(record("c", status="diverged"), csv_curve([(100, 3.0)])) is None


@pytest.mark.parametrize("text,expected", [("flops=1e12", ("flops", 1e12)), ("seconds=30", ("seconds", 30.0)),
                                           ("steps=200", ("steps", 200.0)), ("steps", ("steps", None))])
def test_parse_budget(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["tokens=5", "flops=abc", "seconds=-1", "steps=0"])
def test_parse_budget_rejects(text):
    with pytest.raises(ValueError, match="flops|number"):
        parse_budget(text)


# ---- paired statistics ---------------------------------------------------------------------------

A = [3.10, 3.02, 3.15, 3.07, 3.11]
B = [3.00, 2.97, 3.04, 2.99, 3.05]


def test_paired_and_welch_match_scipy():
    p = paired_t(A, B)
    ref = sps.ttest_rel(A, B)
    assert p.name == PAIRED and p.t == pytest.approx(ref.statistic) and p.p == pytest.approx(ref.pvalue)
    assert p.dof == len(A) - 1
    w = welch_t(A, B)
    ref = sps.ttest_ind(A, B, equal_var=False)
    assert w.name == WELCH and w.t == pytest.approx(ref.statistic) and w.p == pytest.approx(ref.pvalue)
    # pairing removes the shared per-seed offset: the paired p is far smaller on this data
    assert p.p < w.p


def test_effect_sizes_by_hand():
    d = np.subtract(A, B)
    assert cohens_dz(A, B) == pytest.approx(d.mean() / d.std(ddof=1))
    sp = math.sqrt((np.var(A, ddof=1) * 4 + np.var(B, ddof=1) * 4) / 8)
    assert hedges_g(A, B) == pytest.approx((1 - 3 / (4 * 10 - 9)) * (np.mean(A) - np.mean(B)) / sp)
    # constant differences: d_z undefined; t infinite with p = 0, as scipy says
    assert cohens_dz([1, 2], [0, 1]) is None
    ref = sps.ttest_rel([1, 2], [0, 1])
    assert paired_t([1, 2], [0, 1]).t == ref.statistic == math.inf and paired_t([1, 2], [0, 1]).p == ref.pvalue == 0
    assert paired_t([1, 2], [1, 2]) is None


def test_bootstrap_ci_is_deterministic_and_brackets_the_mean():
    lo, hi = bootstrap_ci(A, B, paired=True)
    assert lo < np.mean(np.subtract(A, B)) < hi
    assert (lo, hi) == bootstrap_ci(A, B, paired=True)
    assert min(np.subtract(A, B)) <= lo and hi <= max(np.subtract(A, B))  # resampled means stay in range
    lo2, hi2 = bootstrap_ci(A, B, paired=False)
    assert lo2 < np.mean(A) - np.mean(B) < hi2
    assert bootstrap_ci([1.0], [2.0], paired=True) is None


def test_holm_against_hand_computation():
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.01]) == [pytest.approx(0.5), None, pytest.approx(0.02)]
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1, then kept monotone


def test_compare_pairs_by_seed_falls_back_to_welch_and_warns_on_few_seeds():
    recs = [record("base", seed=s, loss=v) for s, v in enumerate(B)]
    recs += [record("paired", seed=s, loss=v) for s, v in enumerate(A)]
    recs += [record("other", seed=10 + s, loss=v) for s, v in enumerate(A)]  # no shared seeds
    recs += [record("two", seed=s, loss=v + 0.01 * s) for s, v in enumerate(A[:2])]
    recs = sorted(recs, key=lambda r: (r.activation != "base"))
    comps = {k[1]: c for k, c in compare(recs).items()}
    assert comps["base"].is_baseline and comps["base"].verdict == "baseline"
    p = comps["paired"]
    assert p.test.name == PAIRED and p.n == 5 and p.effect_name == "d_z"
    assert p.test.p == pytest.approx(sps.ttest_rel(A, B).pvalue)
    assert p.diff == pytest.approx(np.mean(np.subtract(A, B)))
    o = comps["other"]
    assert o.test.name == WELCH and o.effect_name == "g"
    assert o.test.p == pytest.approx(sps.ttest_ind(A, B, equal_var=False).pvalue)
    t = comps["two"]
    assert t.test.name == PAIRED and t.n == 2 and t.few_seeds and not p.few_seeds
    # Holm over the three tests of the matrix
    raw = [comps[k].test.p for k in ("paired", "other", "two")]
    assert [comps[k].p_holm for k in ("paired", "other", "two")] == pytest.approx(holm(raw))
    assert p.verdict == "worse" and p.mark == "†"
    # seed noise: the baseline's SD over its seeds
    assert seed_noise(recs) == {"nano": pytest.approx(np.std(B, ddof=1))}
    assert p.seed_sd == pytest.approx(np.std(B, ddof=1))


# ---- learning-rate robustness ---------------------------------------------------------------------

def lr_records():
    """l_0 = ln 256 = 5.545; swiglu trains up to 1e-2 and diverges above; gelu trains only up to 1e-3
    (1e-2 ends worse than init), with a diverged seed at 3e-2."""
    l0 = math.log(256)
    out = []
    table = {"swiglu": {1e-4: 4.0, 1e-3: 3.0, 1e-2: 3.5, 3e-2: None, 1e-1: None},
             "gelu": {1e-4: 4.2, 1e-3: 3.2, 1e-2: l0 + 0.5, 3e-2: None, 1e-1: None}}
    for act, per in table.items():
        for lr, loss in per.items():
            for seed in (0, 1):
                status = "diverged" if loss is None else "ok"
                out.append(record(act, seed=seed, loss=loss if loss is not None else 0.0, status=status, lr=lr))
    return out, l0


def test_lr_frontier_best_and_sensitivity_on_forced_divergence():
    recs, l0 = lr_records()
    curves = {c.group[0]: c for c in lr_curves(recs)}
    s, g = curves["swiglu"], curves["gelu"]
    assert s.l0 == pytest.approx(l0)
    assert s.best.lr == 1e-3 and s.best.value == pytest.approx(3.0)
    assert s.frontier == 1e-2 and g.frontier == 1e-3
    assert s.diverged == [3e-2, 1e-1]
    # Wortsman et al.: mean over the grid of min(loss, l_0) - l*, diverged at l_0
    assert s.sensitivity == pytest.approx(np.mean([1.0, 0.0, 0.5, l0 - 3.0, l0 - 3.0]))
    assert g.sensitivity == pytest.approx(np.mean([1.0, 0.0, l0 - 3.2, l0 - 3.2, l0 - 3.2]))
    assert g.sensitivity > s.sensitivity and not s.non_monotone
    rows = {r["activation"]: r for r in lr_rows(list(curves.values()))}
    assert rows["gelu"]["frontier_lr"] == 1e-3 and rows["swiglu"]["best_lr"] == 1e-3


def test_lr_non_monotone_and_single_lr_groups():
    recs = [record("a", lr=1e-3, loss=3.0), record("a", lr=1e-2, status="diverged"), record("a", lr=3e-2, loss=3.3),
            record("b", lr=1e-3, loss=3.0)]  # b has one LR: not a curve
    (c,) = lr_curves(recs)
    assert c.group == ("a", "pre") and c.frontier == 3e-2 and c.non_monotone


def test_real_nano_sweep_marks_a_huge_lr_diverged(tmp_path, capsys):
    """`bench sweep` through the ordinary runner: a sane LR trains, a huge one diverges (non-finite
    loss), and the frontier is the sane one. Nano scale, 6 steps."""
    from bench.cli import main
    from bench.results.records import load_records

    argv = ["sweep", "--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--seed", "0",
            "--lr-grid", "3e-3,1e6", "--train.max_steps", "6", "--train.val_every", "3", "--train.warmup_steps", "1",
            "--train.probe_every", "0", "--train.val_tokens", "1024", "--train.throughput_warmup", "1",
            "--data.ood_corpus", "none", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    recs, problems = load_records(tmp_path / "default-lr")
    assert not problems
    by_lr = {r.config["train"]["lr"]: r for r in recs}
    assert set(by_lr) == {3e-3, 1e6}
    assert by_lr[3e-3].status == "ok" and by_lr[1e6].status == "diverged"
    assert all("-lr" in r.id for r in recs)
    (c,) = lr_curves(recs)
    assert c.frontier == 3e-3 and c.diverged == [1e6] and c.best.lr == 3e-3
    assert c.sensitivity == pytest.approx((c.l0 - c.best.value) / 2)
    assert c.l0_basis == "measured" and c.l0 == pytest.approx(by_lr[3e-3].metrics.init_val_loss)  # not ln V
    out = capsys.readouterr().out
    assert "learning-rate robustness" in out and "Wortsman" in out and "every grid point" in out
    # a rerun trains nothing: resume applies to the sweep's cells as to `bench run`
    assert main(argv) == 0
    assert "all 2 cells of default-lr are done" in capsys.readouterr().out


def test_lr_grid_defaults_and_errors():
    from bench.errors import ConfigError
    from bench.run.config.sweep import lr_grid, parse_grid

    g = lr_grid(3e-3)
    assert len(g) == 7 and g[0] == pytest.approx(3e-4) and g[-1] == pytest.approx(3e-2) and 3e-3 in g
    assert np.allclose(np.diff(np.log10(g)), 1 / 3, atol=0.01)  # log-spaced: 7 points over 2 decades
    assert parse_grid("1e-2, 1e-3") == [1e-3, 1e-2]
    for bad in ("1e-3", "1e-3,abc", "1e-3,-1"):
        with pytest.raises(ConfigError, match="lr-grid"):
            parse_grid(bad)


def test_real_nano_matrix_table_and_report_show_every_comparison(tmp_path, capsys):
    """A real 3-seed nano matrix (2 activations x pre+gpas x 3 seeds, 8 steps, validated every 2): `bench
    table --at` ranks it three ways with paired statistics, and `bench report` renders every comparison
    figure; every embedded image decodes as a PNG."""
    import base64
    import io
    import re
    from html.parser import HTMLParser

    from PIL import Image

    from bench.cli import main

    common = ["--scale", "nano", "--activation", "swiglu,gelu", "--norm", "pre+gpas", "--seed", "0,1,2",
              "--train.max_steps", "8", "--train.val_every", "2", "--train.warmup_steps", "1",
              "--train.probe_every", "4", "--train.val_tokens", "1024", "--train.throughput_warmup", "1",
              "--data.ood_corpus", "none"]
    assert main(["run", *common, "--out", str(tmp_path), "--quiet"]) == 0
    capsys.readouterr()
    folder = tmp_path / "default"
    assert main(["table", str(folder), "--format", "md", "--at", "seconds"]) == 0
    md = capsys.readouterr().out
    # 8 nano steps learn nothing beyond token frequencies: said in one line, and no cell is tested
    assert "Not learned (every cell): 2 group(s)" in md and "likely too few steps (8 optimizer steps)" in md
    assert "paired t (t=" not in md and "| not learned |" in md
    for path in folder.glob("*/record.json"):  # as if a longer run had beaten the references
        rec = json.loads(path.read_text())
        rec["data"]["unigram_ppl"] = 1e6
        path.write_text(json.dumps(rec))
    assert main(["table", str(folder), "--format", "md", "--at", "seconds"]) == 0
    md = capsys.readouterr().out
    assert "Not learned" not in md
    assert "## Paired statistics against the baseline" in md and "paired t (t=" in md and "p_holm" in md
    assert "## Ranking at equal time (training seconds)" in md
    assert "## Rankings at equal steps, equal compute and equal time" in md
    assert re.search(r"\| nano \| (swiglu|gelu) \| pre\+gpas \| [12] \| [12] \| [12] \|", md)
    assert "estimated" not in md  # the seconds come from the logged time column
    assert main(["table", str(folder), "--at", "tokens=5"]) == 2  # one clear line, exit 2
    assert "valid axes: steps, flops, seconds" in capsys.readouterr().err

    assert main(["report", str(folder)]) == 0
    text = (folder / "report.html").read_text()
    links = []

    class Links(HTMLParser):
        def handle_starttag(self, tag, attrs):
            links.extend(v for k, v in attrs if k == "src")

    Links().feed(text)
    pngs = [base64.b64decode(v.split(",", 1)[1]) for v in links if v.startswith("data:image/png;base64,")]
    # loss curves and frontier, the six comparison figures, the outliers-under-precision figure,
    # two probe figures per cell
    assert len(pngs) == len(links) and len(pngs) == 2 + 6 + 1 + 2 * 6
    assert "Outliers under precision" in text
    for data in pngs:
        im = Image.open(io.BytesIO(data))
        im.verify()
        assert im.format == "PNG"
    for heading in ("Paired statistics against the baseline", "Equal steps, equal compute, equal time",
                    "Per-layer activation variance at the end of training", "GPAS gate trajectories by scheme",
                    "Effective rank per FFN matrix", "Layer cosine similarity", "Validation loss with seed bands"):
        assert heading in text, heading
    assert text.count("<details>") == 6 and "nothing to plot" not in text.lower()


# ---- budget views: who reached the budget, a budget no cell reaches, no rank change for a dropout -----

def three_cells():
    """a, b and c at 1 s a step; c is best at every step but stopped at 100 steps."""
    recs = [record("a", loss=fast(200)), record("b", loss=fast(200) + 0.2), record("c", loss=fast(100) - 0.5,
                                                                                   steps=100, train_seconds=100.0)]
    curves = {recs[0].id: csv_curve([(s, fast(s)) for s in STEPS], 1.0),
              recs[1].id: csv_curve([(s, fast(s) + 0.2) for s in STEPS], 1.0),
              recs[2].id: csv_curve([(s, fast(s) - 0.5) for s in STEPS if s <= 100], 1.0)}
    return recs, curves


def test_a_cell_that_drops_out_of_a_view_moves_no_other_cells_rank():
    from bench.results.compare_tables import rank_table

    recs, curves = three_cells()
    views = three_views(recs, curves, {"seconds": 150.0})
    (d,) = disagreements(views)
    assert d.ranks[("c", "pre")] == {"steps": 1, "flops": 1, "seconds": None}
    assert d.ranks[("a", "pre")] == {"steps": 2, "flops": 2, "seconds": 1}  # c is gone at 150 s
    assert d.changed == [] and d.dropped == {("c", "pre"): ["seconds"]}
    rows, notes = rank_table(views)
    by = {r[1]: r[-1] for r in rows}
    assert by == {"a": "", "b": "", "c": "not reached at seconds"}
    assert "no group changes rank" in notes[0]


def test_table_says_which_cells_reached_the_budget():
    from bench.results.leaderboard import to_markdown

    recs, curves = three_cells()
    md = to_markdown(recs, "m", curves=curves, at="seconds=150")
    assert "At equal time (training seconds): 2 group(s) reached the budget with every seed; not reached by " \
           "c / pre (nano: 0/1 seeds)." in md
    assert "| nano | c | pre | 1 | 1 | - | not reached at seconds |" in md


def test_a_budget_no_cell_reaches_is_refused_in_one_line(tmp_path, capsys):
    from bench.cli import main

    recs, curves = three_cells()
    folder = tmp_path / "m"
    for r in recs:
        (folder / r.id).mkdir(parents=True)
        (folder / r.id / "record.json").write_text(json.dumps(r.to_dict()))
        rows = ["epoch,step,time/train_seconds,train/loss,val/loss"]
        rows += [f"0,{s},{v_s},,{v}" for (s, v), (_, v_s) in zip(curves[r.id]["val/loss"],
                                                                     curves[r.id]["time/train_seconds"])]
        (folder / r.id / "metrics.csv").write_text("\n".join(rows) + "\n")
    assert main(["table", str(folder), "--at", "flops=5e12"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--at flops=5e+12 is outside every cell's validation curve" in err
    assert "steps 40 steps to 200 steps" in err and "flops 4e+10 FLOPs to 2e+11 FLOPs" in err
    assert "seconds 40.0 s to 200.0 s" in err
    assert main(["table", str(folder), "--format", "md", "--at", "flops=1e11"]) == 0
