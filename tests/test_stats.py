"""bench.results.stats: confidence intervals, Welch's test (bench.results.paired), time-to-target, scaling fits,
the Pareto front, and the leaderboard's use of them (against scipy and hand computations)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.errors import ConfigError
from bench.results.records import Record
from bench.results.leaderboard import comparison_rows, long_rows, pivots, to_csv, to_markdown
from bench.results.paired import welch_t as welch_test
from bench.results.curves import parse_curve, time_to_target
from bench.results.frontier import pareto_front
from bench.results.grouping import parse_baseline
from bench.results.scaling import POWER_LAW, SATURATING, fit_power_law, fit_saturating, scaling_fits
from bench.results.summary import summarize


def rec(act="swiglu", norm="pre", seed=0, loss=3.0, scale="micro", status="ok", n_params=1000, tokens=10_000,
        steps=10, train_seconds=5.0):
    return Record.from_dict({"id": f"{scale}-{act}-{norm}-s{seed}", "scale": scale, "activation": act, "norm": norm,
            "seed": seed, "status": status,
            "metrics": {"val_loss": loss, "val_ppl": math.exp(loss), "tokens": tokens, "steps": steps,
                        "train_seconds": train_seconds, "tokens_per_sec": 1000.0} if status == "ok" else {},
            "params": {"total": n_params + 100, "non_embedding": n_params},
            "config": {"seed": seed, "model": {"block_size": 10}, "train": {"batch_size": 100, "grad_accum": 1},
                       "data": {"tokenizer": "bytes"}}})


# ---- confidence intervals -----------------------------------------------------------------------

def test_ci_is_student_t_with_n_minus_1_dof():
    vals = [3.1, 2.9, 3.4, 3.0]
    s = summarize(vals)
    mean = sum(vals) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / 3)
    assert s.mean == pytest.approx(mean) and s.std == pytest.approx(sd) and s.n == 4
    assert s.half_width == pytest.approx(sps.t.ppf(0.975, 3) * sd / 2)
    lo, hi = sps.t.interval(0.95, 3, loc=mean, scale=sps.sem(vals))
    assert (s.low, s.high) == (pytest.approx(lo), pytest.approx(hi))
    assert summarize([1.0, 3.0]).half_width == pytest.approx(12.7062047 * math.sqrt(2) / math.sqrt(2))


def test_ci_needs_two_values():
    s = summarize([2.5])
    assert (s.mean, s.n, s.std, s.half_width, s.low) == (2.5, 1, None, None, None)
    with pytest.raises(ValueError):
        summarize([])


# ---- Welch's t-test -----------------------------------------------------------------------------

@pytest.mark.parametrize("a,b", [([3.0, 3.1, 3.2], [3.3, 3.5, 3.4]), ([1.0, 1.5, 0.7, 1.2], [1.1, 1.0]),
                                 ([5.0, 5.0, 5.1], [4.0, 6.0, 5.5, 4.5, 5.2])])
def test_welch_matches_scipy(a, b):
    w = welch_test(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert w.t == pytest.approx(ref.statistic) and w.p == pytest.approx(ref.pvalue)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    assert w.dof == pytest.approx((va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)))


def test_welch_undefined_cases():
    assert welch_test([1.0], [1.0, 2.0]) is None and welch_test([1.0, 2.0], []) is None
    assert welch_test([1.0, 1.0], [2.0, 2.0]) is None  # no variance at all


def test_comparisons_mark_better_worse_and_untestable():
    recs = ([rec("swiglu", "pre", s, l) for s, l in enumerate((3.00, 3.02, 2.98))]
            + [rec("gelu", "pre", s, l) for s, l in enumerate((2.80, 2.81, 2.79))]       # clearly better
            + [rec("powlu", "pre", s, l) for s, l in enumerate((3.30, 3.31, 3.29))]      # clearly worse
            + [rec("relu", "pre", s, l) for s, l in enumerate((3.00, 3.05, 2.97))]       # same
            + [rec("relu2", "pre", 0, 2.0)])                                             # one seed
    rows = {r["activation"]: r for r in comparison_rows(recs)}  # same seeds: paired t per seed (bench.results.paired)
    assert rows["swiglu"]["result"] == "baseline"
    assert rows["gelu"]["result"].startswith("better") and rows["powlu"]["result"].startswith("worse")
    assert not rows["relu"]["result"].startswith(("better", "worse"))
    assert rows["relu2"]["test"] == "none"
    ref = sps.ttest_rel([2.80, 2.81, 2.79], [3.00, 3.02, 2.98])
    assert rows["gelu"]["p"] == pytest.approx(ref.pvalue) and rows["gelu"]["delta_loss"] == pytest.approx(-0.2)

    md = to_markdown(recs, "m")
    gelu_cell = summarize(np.exp([2.80, 2.81, 2.79]))
    assert f"| gelu | {gelu_cell.mean:.3f} ± {gelu_cell.half_width:.3f} (n=3)* |" in md
    assert "(n=3)† |" in md and "(n=3) (base) |" in md and "| relu2 | 7.389 (n=1) |" in md
    assert "Welch's t-test" in md and "p < 0.05" in md

    # another baseline: gelu is now the reference, swiglu significantly worse than it
    p = pivots(recs, "gelu:pre")["micro"]
    assert p["baseline"] == ("gelu", "pre") and p["comparisons"][("swiglu", "pre")].mark == "†"
    rows = {r["activation"]: r for r in comparison_rows(recs, ("gelu", "pre"))}
    assert rows["gelu"]["result"] == "baseline" and rows["powlu"]["result"] == "worse †"


def test_baseline_errors():
    recs = [rec("swiglu", "pre", 0, 3.0), rec("swiglu", "pre", 1, 3.1)]
    with pytest.raises(ConfigError, match="valid: swiglu:pre"):
        pivots(recs, "gelu:pre")
    with pytest.raises(ConfigError, match="ACTIVATION:NORM"):
        pivots(recs, "swiglu")
    assert parse_baseline("swiglu:pre+gpas") == ("swiglu", "pre+gpas") and parse_baseline(None) is None


def test_baseline_missing_at_one_scale_gives_no_marks_there():
    recs = [rec("gelu", "pre", s, 3.0 + s / 10, scale="nano") for s in range(2)] + \
           [rec("swiglu", "pre", s, 3.0 + s / 10) for s in range(2)]
    p = pivots(recs, "swiglu:pre")
    assert p["nano"]["baseline"] is None and p["nano"]["comparisons"] == {}
    assert "not among its cells" in to_markdown(recs, "m", baseline="swiglu:pre")


# ---- time to target -----------------------------------------------------------------------------

CURVE = """epoch,ood/loss,ood/ppl,step,train/loss,val/loss,val/ppl
0,,,4,4.0,,
0,3.9,49.4,9,,3.5,33.1
0,,,14,3.0,,
0,2.9,18.2,19,,2.8,16.4
0,,,24,2.6,,
0,2.5,12.2,29,,2.4,11.0
"""


def test_parse_curve_sparse_rows():
    c = parse_curve(CURVE)
    assert c["val/loss"] == [(9, 3.5), (19, 2.8), (29, 2.4)]
    assert c["train/loss"] == [(4, 4.0), (14, 3.0), (24, 2.6)] and "epoch" not in c


def test_time_to_target_from_the_curve():
    r = rec(tokens=30 * 100 * 10, steps=30, train_seconds=12.0)
    r.config["train"]["grad_accum"] = 2  # metrics.tokens / steps wins over the config when present
    c = parse_curve(CURVE)
    t = time_to_target(r, c, 3.0)  # first val <= 3.0: logged step 19 = 20 steps done
    assert t.reached and t.step == 20 and t.loss == 2.8
    assert t.tokens == 20 * 100 * 10 and t.seconds == pytest.approx(12.0 * 20 / 30) and t.seconds_estimated
    assert time_to_target(r, c, 2.4).step == 30  # exactly equal counts as reached
    assert time_to_target(r, c, 3.5).tokens == 10 * 1000
    assert not time_to_target(r, c, 2.0).reached and time_to_target(r, c, 2.0).tokens is None
    assert not time_to_target(r, None, 3.0).reached
    r.metrics.tokens = None  # from the config: batch_size * block_size * grad_accum
    assert time_to_target(r, c, 3.0).tokens == 20 * 100 * 10 * 2


def test_time_to_target_uses_a_time_column_when_there_is_one():
    text = CURVE.replace("val/ppl\n", "val/ppl,time/train_seconds\n", 1)
    lines = text.splitlines()
    lines = [lines[0]] + [ln + f",{float(i)}" for i, ln in enumerate(lines[1:], 1)]
    t = time_to_target(rec(steps=30), parse_curve("\n".join(lines)), 3.0)
    assert t.seconds == 4.0 and not t.seconds_estimated  # the row logged at step 19 is the 4th


def test_long_table_time_to_target_column():
    r = rec(tokens=30 * 1000, steps=30, train_seconds=12.0)
    rows = long_rows([r], target=3.0, curves={r.id: parse_curve(CURVE)})
    assert rows[0]["tokens_to_target"] == 20_000 and rows[0]["seconds_to_target"] == pytest.approx(8.0)
    md = to_markdown([r], "m", target=3.0, curves={r.id: parse_curve(CURVE)})
    assert "tokens_to_target | seconds_to_target |" in md and "| 20,000 | ~8 |" in md
    assert "not reached" in to_markdown([r], "m", target=1.0, curves={r.id: parse_curve(CURVE)})
    assert "no curve" in to_markdown([r], "m", target=1.0, curves={})
    assert "tokens_to_target" not in to_markdown([r], "m")
    assert to_csv([r], target=3.0, curves={r.id: parse_curve(CURVE)}).splitlines()[1].endswith(",20000,8.0")


# ---- scaling fits -------------------------------------------------------------------------------

def test_power_law_recovers_the_exponent_exactly():
    xs = np.array([1e5, 1e6, 1e7, 3e7])
    a, alpha, se = fit_power_law(xs, 7.0 * xs ** -0.076)
    assert alpha == pytest.approx(0.076, abs=1e-12) and a == pytest.approx(7.0, rel=1e-10)
    assert se == pytest.approx(0.0, abs=1e-10)
    assert fit_power_law(xs[:2], 7.0 * xs[:2] ** -0.076)[2] is None  # 2 points: no residual dof


def test_power_law_standard_error_matches_linregress():
    rng = np.random.default_rng(0)
    xs = np.repeat([1e5, 1e6, 1e7], 3)
    ys = 9.0 * xs ** -0.1 * np.exp(rng.normal(0, 0.01, xs.size))
    a, alpha, se = fit_power_law(xs, ys)
    ref = sps.linregress(np.log(xs), np.log(ys))
    assert alpha == pytest.approx(-ref.slope) and se == pytest.approx(ref.stderr)
    assert a == pytest.approx(math.exp(ref.intercept))


def test_saturating_fit_recovers_known_parameters():
    xs = np.array([1e5, 4e5, 2e6, 1e7, 6e7])
    a, alpha, e, se_alpha, se_e = fit_saturating(xs, 400.0 * xs ** -0.34 + 1.7)
    assert alpha == pytest.approx(0.34, rel=1e-6) and e == pytest.approx(1.7, rel=1e-6)
    assert a == pytest.approx(400.0, rel=1e-5) and se_alpha < 1e-6


def test_scaling_fits_choose_the_form_by_number_of_scales():
    n = {"nano": 1e5, "micro": 1e6, "small": 1e7, "big": 1e8}
    tokens = 1e6
    two = [rec("swiglu", "pre", s, float(np.log(5 * n[sc] ** -0.1)), scale=sc, n_params=int(n[sc]), tokens=tokens)
           for sc in ("nano", "micro") for s in range(2)]
    fits = scaling_fits(two)
    assert [f.x for f in fits] == ["N", "C"] and all(f.form == POWER_LAW for f in fits)
    ys = [f for f in fits if f.x == "N"][0]
    assert ys.alpha == pytest.approx(-np.polyfit(np.log([1e5, 1e6]), np.log(np.log(5 * np.array([1e5, 1e6]) ** -0.1)),
                                                 1)[0])
    assert ys.n_points == 4 and ys.n_scales == 2
    c = [f for f in fits if f.x == "C"][0]
    assert c.xs[0] == pytest.approx(6 * 1e5 * tokens) and c.alpha == pytest.approx(ys.alpha)  # D is constant

    four = [rec("gelu", "pre", 0, 2.0 * n[sc] ** -0.25 + 1.5, scale=sc, n_params=int(n[sc]))
            for sc in ("nano", "micro", "small", "big")]
    f = [f for f in scaling_fits(four) if f.x == "N"][0]
    assert f.form == SATURATING and f.alpha == pytest.approx(0.25, rel=1e-5) and f.E == pytest.approx(1.5, rel=1e-5)
    assert f.alpha_se is not None  # 4 points, 3 parameters: one residual dof
    assert scaling_fits([rec()]) == []  # one scale: nothing to fit
    assert pareto_front([(1, 5)]) == [0]


def test_pareto_front():
    pts = [(100, 10.0), (200, 12.0), (50, 9.0), (150, 11.0), (120, 12.5), (200, 13.0)]
    assert pareto_front(pts) == [2, 0, 3, 1]  # sorted by speed; (120, 12.5) and (200, 13) are dominated


def test_pivot_order_and_default_baseline_follow_the_run_not_the_folder_names():
    """load_records sorts by folder name (gelu before swiglu); the pivot and its default baseline
    follow the order the cells were run in, and the matrix order the runner recorded first."""
    recs = [rec("gelu", "pre", s, 2.9 + s / 100) for s in range(2)] + [rec("swiglu", "pre", s, 3.0 + s / 100)
                                                                        for s in range(2)]
    for i, r in enumerate(recs):
        r.started = f"2026-01-01T00:00:0{(i + 2) % 4}"  # swiglu cells started first
    p = pivots(recs)["micro"]
    assert p["rows"] == ["swiglu", "gelu"] and p["baseline"] == ("swiglu", "pre")
    assert p["comparisons"][("gelu", "pre")].mark == "*"
    for r in recs:  # the command line is not read: the results layer does not depend on CLI spelling
        r.command = ["bench", "run", "--activation", "gelu,swiglu", "--norm", "pre"]
    assert pivots(recs)["micro"]["rows"] == ["swiglu", "gelu"]
    for r in recs:
        r.extra["axis_order"] = {"scale": ["micro"], "activation": ["gelu", "swiglu"], "norm": ["pre"]}
    assert pivots(recs)["micro"]["rows"] == ["gelu", "swiglu"]
