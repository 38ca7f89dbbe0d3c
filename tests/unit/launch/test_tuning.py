"""Tuned comparisons, `--tune lr` (bench/launch/tuning.py): every group gets the same LR grid on the same
tuning seeds, the best LR is read as `bench sweep` reads a sweep, the comparison runs on fresh seeds at
each group's best LR, and a claim whose verdicts at the shared and tuned LRs disagree says so."""

from __future__ import annotations

import json
import math

import pytest

from bench import cli
from bench.errors import ConfigError
from bench.launch.tuning import TUNING_SEED, Tuning, best_lrs, group_of, tuning_cells
from bench.results.paper_claims import mark_lr_dependence
from bench.results.records import Record
from bench.run.config.matrix import expand, load_matrix
from bench.run.config.sweep import lr_grid


def cells_at(seeds, acts=("swiglu", "gelu")):
    return expand(load_matrix("default"), {"train.max_steps": 40},
                  {"scale": ["nano"], "activation": list(acts), "norm": ["pre"], "seed": list(seeds)})


def test_every_group_gets_the_same_budget_on_tuning_seeds_only():
    cells = cells_at([0, 1, 2])
    t = Tuning(points=4, decades=2.0, seeds=2)
    grid = tuning_cells(cells, t)
    assert len(grid) == 2 * 4 * 2  # groups x LRs x tuning seeds: the seeds of the comparison add nothing
    for act in ("swiglu", "gelu"):
        mine = [c for c in grid if c.config.model.activation == act]
        center = next(c for c in cells if c.config.model.activation == act).config.train.lr
        assert sorted({c.config.train.lr for c in mine}) == lr_grid(center, 4, 2.0)
        assert sorted({c.config.seed for c in mine}) == [TUNING_SEED, TUNING_SEED + 1]
    assert {group_of(c) for c in grid} == {group_of(c) for c in cells}  # the same groups, whatever LR and seed


def record_of(cell, loss: float | None) -> Record:
    return Record.from_dict({
        "id": cell.id, "status": "ok" if loss is not None else "diverged", "scale": cell.config.scale,
        "activation": cell.config.model.activation, "norm": cell.config.norm, "seed": cell.config.seed,
        "config": json.loads(json.dumps(cell.config.to_dict())),  # as written: JSON, no tuples
        "params": {"total": 2, "non_embedding": 1}, "data": {"unigram_ppl": 60.0},
        "metrics": {"val_loss": loss, "val_ppl": math.exp(loss) if loss else None, "init_val_loss": 5.5}})


@pytest.mark.parametrize("best_at", [0, 2, 4])
def test_the_best_lr_is_the_lowest_mean_loss_on_the_grid(best_at):
    cells = cells_at([0])
    t = Tuning(points=5, decades=2.0, seeds=2)
    grid = tuning_cells(cells, t)
    lrs = lr_grid(cells[0].config.train.lr, 5, 2.0)

    def loss(c):
        i = lrs.index(c.config.train.lr)
        if c.config.model.activation == "gelu" and i == 4:
            return None  # gelu diverges at the largest LR: counted at the loss at init
        return 3.0 + 0.1 * abs(i - best_at) + 0.01 * (c.config.seed - TUNING_SEED)

    best = best_lrs([record_of(c, loss(c)) for c in grid], cells, t)
    want = {"swiglu": lrs[best_at], "gelu": lrs[min(best_at, 3) if best_at < 4 else 3]}
    assert best == {group_of(c): want[c.config.model.activation] for c in cells}


def test_a_bad_budget_is_one_line():
    for kw, said in (({"points": 1}, "--tune-points"), ({"decades": 0}, "--tune-decades"), ({"seeds": 0},
                                                                                            "--tune-seeds")):
        with pytest.raises(ConfigError, match=said):
            Tuning(**kw)


def entry(claim, outcome, tuned):
    return {"claim": claim, "arm": "a:pre", "scale": "nano", "outcome": outcome, "verdict": outcome,
            "tuned": "yes" if tuned else "no"}


def test_verdicts_that_disagree_between_shared_and_tuned_lr_are_marked():
    shared = [entry("x", "reproduced", False), entry("y", "reproduced", False), entry("z", "undecided", False)]
    tuned = [entry("x", "not reproduced", True), entry("y", "reproduced", True), entry("z", "reproduced", True)]
    rows = mark_lr_dependence(shared, tuned)
    assert [(r["claim"], r["tuned"]) for r in rows] == [("x", "no"), ("x", "yes"), ("y", "no"), ("y", "yes"),
                                                        ("z", "no"), ("z", "yes")]
    marked = [(r["claim"], r["tuned"]) for r in rows if r.get("depends_on_lr")]
    assert marked == [("x", "no"), ("x", "yes")]  # undecided on one side is no disagreement
    assert all("depends on LR (shared: reproduced, tuned: not reproduced)" in r["verdict"] for r in rows[:2])


CLAIM = """paper: test
claims:
  - id: gelu-vs-swiglu
    statement: GELU is lower than SwiGLU
    where: nowhere
    arms: [gelu:pre]
    baseline: swiglu:pre
    metric: val_loss
    direction: lower
    published: {text: none, scale: nano}
    margin: 0.01
"""


@pytest.mark.slow
def test_claims_tuned_compares_fresh_seeds_at_each_arms_best_lr(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    path.write_text(CLAIM)
    argv = ["claims", str(path), "--scale", "nano", "--tune", "lr", "--tune-points", "2", "--out", str(tmp_path),
            "--train.max_steps", "20", "--train.val_every", "20", "--train.val_tokens", "2048", "--train.probe_every",
            "0", "--ckpt-every", "0", "--quiet"]
    assert cli.main(argv) == 0
    text = " ".join(capsys.readouterr().out.split())
    tune, tuned = tmp_path / "claims-t-tune", tmp_path / "claims-t-tuned"
    tuning = [json.loads(p.read_text()) for p in tune.glob("*/record.json")]
    assert len(tuning) == 4 and {r["seed"] for r in tuning} == {TUNING_SEED}  # 2 groups x 2 LRs, tuning seed
    compared = [json.loads(p.read_text()) for p in tuned.glob("*/record.json")]
    assert {r["seed"] for r in compared} == {0}  # fresh seeds
    for r in compared:  # each arm at its own best LR on the tuning runs
        mine = [t for t in tuning if t["activation"] == r["activation"]]
        best = min(mine, key=lambda t: t["metrics"]["val_loss"] if t["status"] == "ok" else math.inf)
        assert r["config"]["train"]["lr"] == best["config"]["train"]["lr"]
    assert "no: shared LR" in text and "yes: LR" in text
    (stored,) = (tmp_path / "claims-t" / "claims").glob("*.json")
    assert [e["tuned"][:3] for e in json.loads(stored.read_text())["verdicts"]] == ["no:", "yes"]
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*/record.json")}
    assert cli.main(argv) == 0  # a rerun trains nothing
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*/record.json")} == mtimes


@pytest.mark.slow
def test_run_tuned_shows_both_verdicts(tmp_path, capsys):
    argv = ["run", "--scale", "nano", "--activation", "swiglu,gelu", "--norm", "pre", "--tune", "lr", "--tune-points",
            "2", "--out", str(tmp_path), "--train.max_steps", "20", "--train.val_every", "20", "--train.val_tokens",
            "2048", "--train.probe_every", "0", "--ckpt-every", "0", "--quiet"]
    assert cli.main(argv) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "verdicts at the shared and at the tuned learning rates" in text.lower()
    tuned = [json.loads(p.read_text()) for p in (tmp_path / "default-tuned").glob("*/record.json")]
    assert sorted(r["activation"] for r in tuned) == ["gelu", "swiglu"] and {r["seed"] for r in tuned} == {0}
    assert len(list((tmp_path / "default-tune").glob("*/record.json"))) == 4


@pytest.mark.parametrize("extra", [["--tune-points", "3"], ["--tune-seeds", "2"]])
def test_a_tuning_option_without_tune_is_one_line(extra, tmp_path, capsys):
    assert cli.main(["run", "--scale", "nano", "--out", str(tmp_path), *extra]) == 2
    assert "sets the budget of --tune lr" in capsys.readouterr().err and not any(tmp_path.iterdir())


def ladder_like(acts=("swiglu", "gelu")):
    """Cells as a ladder makes them: two rungs (an N axis, their own widths), one seed."""
    from bench.run.config.matrix import make_cell

    out = []
    for label, d in (("13k", 32), ("28k", 48)):
        for act in acts:
            settings = {"scale": "nano", "activation": act, "norm": "pre", "seed": 0}
            combo = {**settings, "N": label}
            out.append(make_cell({**settings, "model.d_model": d, "train.max_steps": 40}, None, combo))
    return out


def test_a_ladder_extrapolates_each_groups_lr_with_a_power_law_through_its_tuned_rungs():
    from bench.launch.tuning import ladder_group, lr_laws
    from bench.results.render import markdown
    from bench.results.tables.comparisons import lr_law_table

    cells = ladder_like()
    sizes = {"13k": 13_000.0, "28k": 28_000.0}
    t = Tuning(points=5, decades=2.0)
    lrs = lr_grid(cells[0].config.train.lr, 5, 2.0)
    want = {"13k": 3, "28k": 1}  # the best LR falls with N

    def loss(c):
        return 3.0 + 0.1 * abs(lrs.index(c.config.train.lr) - want[dict(c.axes)["N"]])

    laws = lr_laws([record_of(c, loss(c)) for c in tuning_cells(cells, t)], cells, sizes, t)
    assert set(laws) == {ladder_group(c) for c in cells} and len(laws) == 2
    for law in laws.values():
        assert law.tuned == ((13_000.0, lrs[3]), (28_000.0, lrs[1]))
        alpha = math.log(lrs[3] / lrs[1]) / math.log(28 / 13)
        assert law.law.alpha == pytest.approx(alpha, rel=1e-4) and law.law.E == 0
        assert law.lr(13_000) == pytest.approx(lrs[3], rel=2e-3)  # through its points (3 digits)
        assert law.lr(233_000) == pytest.approx(float(f"{lrs[3] * (233 / 13) ** -alpha:.3g}"), rel=1e-3)
    table = lr_law_table(list(laws.values()), [13_000.0, 28_000.0, 233_000.0])
    assert "lr*(N) = " in markdown(table) and "233,000: " in markdown(table)


@pytest.mark.slow
def test_ladder_tuned_at_its_smallest_rungs_shows_the_law_and_both_verdicts(tmp_path, capsys):
    argv = ["ladder", "--scale", "nano", "--activation", "swiglu,gelu", "--norm", "pre", "--params", "2e3:1.2e4",
            "--rungs", "2", "--head-dim", "8", "--aspect", "16", "--tokens-per-param", "0.1", "--tune", "lr",
            "--tune-points", "2", "--out", str(tmp_path), "--train.probe_every", "0", "--train.val_tokens", "1024",
            "--ckpt-every", "0", "--quiet"]
    assert cli.main(argv) == 0
    text = " ".join(capsys.readouterr().out.split()).lower()
    assert "a power law in n through the tuned rungs" in text and "lr*(n) = " in text
    assert "verdicts at the shared and at the tuned learning rates" in text
    assert len(list((tmp_path / "default-ladder-tune").glob("*/record.json"))) == 8  # 2 rungs x 2 groups x 2 LRs
    assert len(list((tmp_path / "default-ladder-tuned").glob("*/record.json"))) == 4


def test_a_best_lr_at_the_edge_of_the_grid_is_named():
    from bench.launch.tuning import at_edge

    cells = cells_at([0])
    t = Tuning(points=3, decades=1.0)
    lrs = lr_grid(cells[0].config.train.lr, 3, 1.0)
    best = {group_of(cells[0]): lrs[-1], group_of(cells[1]): lrs[1]}
    edge = at_edge(cells, best, t)
    assert edge == [f"{cells[0].config.model.activation}/pre at nano ({lrs[-1]:g})"]
