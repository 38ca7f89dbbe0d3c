"""The papers' claims as data (bench/results/paper_claims.py): the files load and name what the papers
show, a claim's verdict reads its direction on known truths, margins of any unit judge alike, and a
changed claims file makes new verdicts without touching the old ones."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.errors import ConfigError
from models import UnknownName
from bench.results.paper_claims import (CLAIMS_DIR, METRICS, NOT_LEARNED, NOT_REPRODUCED, REPRODUCED, UNDECIDED,
                                  claims_table, entry, judge_claims, load_claims, stored_verdicts, write_verdicts)
from bench.results.records import Record
from bench.results.render import markdown
from bench.results.stats.sequential import Design

CLAIM = """paper: test
scales: [nano]
claims:
  - id: a-lower
    statement: A is lower than B
    where: Table 1
    arms: [gelu:pre]
    baseline: swiglu:pre
    metric: {metric}
    direction: {direction}
    published: {{effect: -0.02, unit: nats, scale: polycom-1b}}
    margin: {margin}
"""


def write_claims(tmp_path, metric="val_loss", direction="lower", margin=0.01, name="t"):
    p = tmp_path / f"{name}.yaml"
    p.write_text(CLAIM.format(metric=metric, direction=direction, margin=margin))
    return p


def rec(act: str, seed: int, loss: float, scale="nano", norm="pre", probes=None, unigram=60.0) -> Record:
    return Record.from_dict({
        "id": f"{scale}-{act}-{norm}-s{seed}", "status": "ok", "scale": scale, "activation": act, "norm": norm,
        "seed": seed, "config": {"seed": seed, "train": {"lr": 3e-3}}, "data": {"unigram_ppl": unigram},
        "params": {"total": 20_000, "non_embedding": 10_000}, "probes": probes,
        "metrics": {"val_loss": loss, "val_ppl": math.exp(loss)}, "wall_seconds": 2.0})


def records(diff: float, sd: float, seeds: int, seed: int = 0, scale: float = 1.0) -> list[Record]:
    """swiglu at 3.0, gelu at 3.0 + diff, per-seed differences with SD ``sd`` (losses times ``scale``)."""
    noise = np.random.default_rng(seed).standard_normal(seeds)
    ref = math.exp(4.1 * scale)  # the unigram reference scales along: both sides learned
    return [r for s in range(seeds) for r in (rec("swiglu", s, 3.0 * scale, unigram=ref),
                                               rec("gelu", s, (3.0 + diff + sd * noise[s]) * scale, unigram=ref))]


@pytest.mark.parametrize("name", sorted(p.stem for p in CLAIMS_DIR.glob("*.yaml")))
def test_every_shipped_claims_file_loads_and_says_where_and_how_much(name):
    claims = load_claims(name)
    assert claims.claims and claims.paper and len(claims.digest) == 12
    for c in claims.claims:
        assert c.statement and c.where and c.margin > 0 and c.metric in METRICS
        assert c.published.get("scale") and ("effect" in c.published or "text" in c.published)
        assert c.published_text()


def test_the_shipped_files_hold_the_papers_headline_claims():
    polycom = {c.id: c for c in load_claims("polycom").claims}
    assert polycom["polynorm-vs-swiglu"].published["effect"] == pytest.approx(2.17 - 2.19)  # Table 1
    gpas = load_claims("gpas").claims
    assert {c.baseline[1] for c in gpas} == {"pre", "sandwich", "mixln", "lns", "deepnorm"}  # every scheme
    assert all(c.arms[0][1] == c.baseline[1] + "+gpas" for c in gpas)
    pre = next(c for c in gpas if c.id == "gpas-pre")
    assert pre.published["effect"] == pytest.approx(math.log(33.49 / 34.23), abs=1e-4)  # Table 2, 71M
    powlu = {c.metric for c in load_claims("powlu").claims}
    assert {"ffn_max_abs", "ffn_kurtosis", "val_loss"} <= powlu


@pytest.mark.parametrize("edit, said", [
    (("metric: val_loss", "metric: val_los"), "Did you mean 'val_loss'"),
    (("direction: lower", "direction: down"), "lower, higher, equal"),
    (("margin: 0.01", "margin: -1"), "margin must be a positive number"),
    (("arms: [gelu:pre]", "arms: [gelu]"), "ACTIVATION:NORM"),
    (("where: Table 1", "wher: Table 1"), "Did you mean 'where'"),
])
def test_a_bad_claims_file_is_one_line_naming_the_choices(tmp_path, edit, said):
    p = tmp_path / "bad.yaml"
    p.write_text(CLAIM.format(metric="val_loss", direction="lower", margin=0.01).replace(*edit))
    with pytest.raises((ConfigError, UnknownName), match=said) as e:
        load_claims(str(p))
    assert "\n" not in str(e.value)


def test_an_unknown_claims_name_names_the_files():
    with pytest.raises(UnknownName, match="polycom"):
        load_claims("polycon")


@pytest.mark.parametrize("direction, diff, sd, want", [
    ("lower", -0.2, 0.01, REPRODUCED), ("lower", +0.2, 0.01, NOT_REPRODUCED), ("lower", 0.0, 0.0005, NOT_REPRODUCED),
    ("higher", +0.2, 0.01, REPRODUCED), ("equal", 0.0, 0.0005, REPRODUCED), ("equal", -0.2, 0.01, NOT_REPRODUCED),
    ("lower", -0.01, 0.05, UNDECIDED),
])
def test_a_claims_outcome_reads_its_verdict_against_its_direction(tmp_path, direction, diff, sd, want):
    claims = load_claims(str(write_claims(tmp_path, direction=direction)))
    (j,) = judge_claims(claims, records(diff, sd, 5), ["nano"])
    assert j.outcome == want, j.text()
    assert j.text().startswith(want)
    if want == UNDECIDED:
        assert "seeds could detect" in j.text() and "would decide" in j.text()


def test_a_margin_in_other_units_judges_alike(tmp_path):
    """Losses x 10 with the margin x 10: the same verdict, the difference and interval x 10."""
    a = load_claims(str(write_claims(tmp_path, margin=0.01, name="a")))
    b = load_claims(str(write_claims(tmp_path, margin=0.1, name="b")))
    for diff, sd in ((-0.02, 0.01), (0.003, 0.002), (0.0, 0.02)):
        (ja,) = judge_claims(a, records(diff, sd, 4, seed=3), ["nano"])
        (jb,) = judge_claims(b, records(diff, sd, 4, seed=3, scale=10.0), ["nano"])
        assert ja.verdict.kind == jb.verdict.kind and ja.outcome == jb.outcome
        assert jb.diff == pytest.approx(10 * ja.diff) and jb.ci95[0] == pytest.approx(10 * ja.ci95[0])


def test_a_log_metric_compares_ratios(tmp_path):
    claims = load_claims(str(write_claims(tmp_path, metric="ffn_max_abs", margin=0.1)))
    recs = [rec(a, s, 3.0, probes={"steps": [10, 20], "ffn_max_abs": [[1.0, 2.0], [v * (1 + 0.01 * s), 1.0]]})
            for s in range(4) for a, v in (("swiglu", 40.0), ("gelu", 10.0))]
    (j,) = judge_claims(claims, recs, ["nano"])
    assert j.diff == pytest.approx(math.log(10 / 40)) and j.outcome == REPRODUCED


def test_a_side_that_learned_nothing_is_not_judged(tmp_path):
    claims = load_claims(str(write_claims(tmp_path)))
    recs = [rec("swiglu", s, 4.2, unigram=60.0) for s in range(3)] + [rec("gelu", s, 3.0) for s in range(3)]
    (j,) = judge_claims(claims, recs, ["nano"])  # ln 60 = 4.09: the baseline is no better than unigrams
    assert j.outcome == NOT_LEARNED and j.verdict is None


def test_a_sequential_folder_is_judged_with_the_design(tmp_path):
    claims = load_claims(str(write_claims(tmp_path)))
    (fixed,) = judge_claims(claims, records(-0.03, 0.01, 3, seed=1), ["nano"])
    (seq,) = judge_claims(claims, records(-0.03, 0.01, 3, seed=1), ["nano"], Design(6))
    assert seq.verdict.test == "sequential paired t" and fixed.verdict.test == "paired t"
    assert seq.verdict.p_holm >= fixed.verdict.p_holm  # the looks cost error rate


def test_a_changed_claims_file_makes_new_verdicts_and_keeps_the_old(tmp_path):
    path = write_claims(tmp_path)
    old = load_claims(str(path))
    first = write_verdicts(tmp_path / "out", old, [entry(j, old.digest) for j in
                                                   judge_claims(old, records(-0.2, 0.01, 3), ["nano"])])
    kept = first.read_bytes()
    path.write_text(path.read_text().replace("margin: 0.01", "margin: 0.5"))  # the claim changed after results
    new = load_claims(str(path))
    assert new.digest != old.digest
    second = write_verdicts(tmp_path / "out", new, [entry(j, new.digest) for j in
                                                    judge_claims(new, records(-0.2, 0.01, 3), ["nano"])])
    assert second != first and first.read_bytes() == kept
    stored = {d["claims_hash"]: d for d in stored_verdicts(tmp_path / "out")}
    assert set(stored) == {old.digest, new.digest}
    assert all(e["claims_hash"] == h for h, d in stored.items() for e in d["verdicts"])
    assert "margin: 0.01" in stored[old.digest]["claims_file"]


def test_the_claims_table_has_the_columns_a_reader_needs(tmp_path):
    claims = load_claims(str(write_claims(tmp_path)))
    entries = [entry(j, claims.digest) for j in judge_claims(claims, records(-0.2, 0.01, 3), ["nano"])]
    table = claims_table(entries, claims.name, claims.digest, claims.paper)
    assert table.names == ["claim", "paper", "scale", "ours", "verdict", "tuned", "seeds", "compute"]
    (row,) = table.texts()
    assert row[0] == "a-lower: gelu:pre vs swiglu:pre" and row[1].startswith("-0.02 nats (polycom-1b)")
    assert row[3].startswith(f"{entries[0]['diff']:+.3g} nats [") and row[4].startswith(REPRODUCED)
    assert row[5] == "no: shared LR 0.003" and row[6] == "3" and row[7] == "12"
    assert claims.digest in markdown(table)


def test_the_report_shows_every_version_of_the_claims(tmp_path):
    from bench.results.report import render_html

    path = write_claims(tmp_path)
    recs = records(-0.2, 0.01, 3)
    for margin in ("0.01", "0.5"):
        path.write_text(path.read_text().replace("margin: 0.01", f"margin: {margin}"))
        c = load_claims(str(path))
        write_verdicts(tmp_path / "out", c, [entry(j, c.digest) for j in judge_claims(c, recs, ["nano"])])
    stored = stored_verdicts(tmp_path / "out")
    page = render_html(recs, "t", claims=stored)
    assert '<h2 id="claims">Claims</h2>' in page
    for d in stored:
        assert f"Claims of t ({d['claims_hash']})" in page
    assert "a-lower: gelu:pre vs swiglu:pre" in page and "<script" not in page
