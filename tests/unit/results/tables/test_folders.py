"""`bench compare A B` (bench/results/tables/folders.py): two result folders side by side, cells matched by
identity, the paired statistics where they match (checked against scipy), every unmatched cell listed; on
synthetic records whose answers are known, through the CLI (in-process)."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil

import pytest
from scipy import stats as sps

from bench import cli
from bench.results.stats.verdicts import holm

from ..support import latex_tables, untex, write_matrix


def mutate(folder, fn):
    """fn(record dict) -> the dict to write, or None to delete that cell."""
    for p in sorted(folder.glob("*/record.json")):
        r = fn(json.loads(p.read_text()))
        if r is None:
            shutil.rmtree(p.parent)
        else:
            r["metrics"]["val_ppl"] = math.exp(r["metrics"]["val_loss"])
            p.write_text(json.dumps(r))


def md_table(text: str, title: str) -> list[dict]:
    block = text.split(f"## {title}\n\n")[1].split("\n\n")[0].splitlines()
    head = [h.strip() for h in block[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in ln.strip("|").split("|")))) for ln in block[2:]]


def new_version(r):
    """B: a new code version. powlu/pre 0.2 nats better (seed-dependent), powlu/pre+gpas slightly worse,
    swiglu/pre lost seed 2, a new config field with its default."""
    r["environment"]["git"]["commit"] = "f" * 40
    r["config"]["data"]["val_tokens"] = 1024
    key = (r["activation"], r["norm"])
    if key == ("swiglu", "pre") and r["seed"] == 2:
        return None
    r["metrics"]["val_loss"] += {("powlu", "pre"): -0.2 - 0.002 * r["seed"] ** 2,
                                 ("powlu", "pre+gpas"): 0.001 + 0.003 * r["seed"] ** 2}.get(key, 0.0)
    return r


def losses(folder, act, norm):
    recs = [json.loads(p.read_text()) for p in folder.glob("*/record.json")]
    return {r["seed"]: r["metrics"]["val_loss"] for r in recs if (r["activation"], r["norm"]) == (act, norm)}


def test_two_code_versions_side_by_side_with_paired_statistics(tmp_path, compare):
    a, _ = write_matrix(tmp_path / "a", with_probes=False, scales=("nano",))
    b, _ = write_matrix(tmp_path / "b", with_probes=False, scales=("nano",))
    mutate(b, new_version)
    code, text, err = compare(str(a), str(b))
    assert code == 0, err
    assert f"A: {a} (12 cells, git 0123456789ab); B: {b} (11 cells, git ffffffffffff)." in text
    assert "A and B differ in (set aside when matching cells): data.val_tokens (A: (unset); B: 1024)." in text
    assert "Matched 11 cell(s) of A with B's, in 4 group(s); unmatched: 1 in A only, 0 in B only" in text
    rows = {(row["activation"], row["norm"]): row for row in md_table(text, "B against A: final validation PPL")}
    assert len(rows) == 4 and "config" not in rows["powlu", "pre"]
    # the paired t-test of B - A over the shared seeds, as scipy computes it, Holm over the two tests
    ps = []
    for key in (("powlu", "pre"), ("powlu", "pre+gpas")):
        la, lb = losses(a, *key), losses(b, *key)
        t = sps.ttest_rel([lb[s] for s in range(3)], [la[s] for s in range(3)])
        row = rows[key]
        assert row["seeds"] == "3 pairs" and row["test"] == f"paired t (t={t.statistic:.3g}, dof=2)"
        assert row["p"] == f"{t.pvalue:.3g}"
        assert float(row["delta_loss"]) == pytest.approx(sum(lb[s] - la[s] for s in range(3)) / 3, abs=1e-4)
        ppl = sum(math.exp(lb[s]) - math.exp(la[s]) for s in range(3)) / 3
        assert float(row["delta_ppl"]) == pytest.approx(ppl, abs=1e-3)
        ps.append(t.pvalue)
    # swiglu's groups are the same on both sides: every difference 0, p = 1, in the family too
    for key, p in zip((("powlu", "pre"), ("powlu", "pre+gpas")), holm(ps + [1.0, 1.0])):
        assert rows[key]["p_holm"] == f"{p:.3g}"
    assert rows["powlu", "pre"]["result"] == "better *"
    assert rows["powlu", "pre+gpas"]["result"] in ("worse †", "undecided")
    # swiglu/pre: two shared seeds, identical losses: equivalent (every difference 0); B's mean over its 2 seeds
    assert rows["swiglu", "pre"]["seeds"] == "2 pairs" and rows["swiglu", "pre"]["B val_ppl"].endswith("(n=2)")
    assert rows["swiglu", "pre"]["result"] == "equivalent (n<3)"
    assert rows["swiglu", "pre"]["verdict"].startswith("equivalent within ±0.010: +0.000 nats")
    unmatched = md_table(text, "Cells without a match")
    assert [(u["side"], u["activation"], u["norm"], u["seed"], u["why"]) for u in unmatched] == [
        ("A", "swiglu", "pre", "2", "seed 2 is not in B")]


def test_matrices_differing_in_one_axis_in_every_format(tmp_path, compare):
    a, _ = write_matrix(tmp_path / "a", with_probes=False, scales=("nano",), seeds=(0, 1))
    b, _ = write_matrix(tmp_path / "b", with_probes=False, scales=("nano",), seeds=(0, 1, 2))
    mutate(a, lambda r: {**r, "config": {**r["config"], "train": {**r["config"]["train"], "lr": 0.001}}})
    mutate(b, lambda r: {**r, "config": {**r["config"], "train": {**r["config"]["train"], "lr": 0.003}},
                         "metrics": {**r["metrics"], "val_loss": r["metrics"]["val_loss"] + 0.05 * r["seed"]}})
    code, text, err = compare(str(a), str(b), "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(text)))
    groups = [row for row in rows if not row["result"].startswith("only in")]
    assert len(groups) == 4 and all(g["seeds"] == "2 pairs" and not g["id"] for g in groups)
    assert all(float(g["B/A tokens/s"]) == pytest.approx(1.0, abs=0.01) for g in groups)  # raw numbers, for scripts
    only = [row for row in rows if row["result"].startswith("only in")]  # seed 2 of each group, in B only
    assert len(only) == 4 and all(o["result"] == "only in B: seed 2 is not in A" and o["id"] for o in only)
    assert all(o["B val_ppl"].endswith("(n=1)") and not o["A val_ppl"] for o in only)
    code, text, err = compare(str(a), str(b), "--format", "latex")
    assert code == 0, err
    tabs = latex_tables(text)
    assert [t["caption"] for t in tabs] == ["B against A: final validation PPL", "B against A: cells without a match"]
    assert "\\label{tab:compare}" in tabs[0]["block"] and "\\label{tab:compare-unmatched}" in tabs[1]["block"]
    for t in tabs:
        assert all(len(row) == len(t["spec"]) for row in t["rows"])
        for cell in [c for row in t["rows"] for c in row] + t["foot"].split(r"\par"):
            untex(cell.replace(r"\par", ""))
    assert "train.lr (A: 0.001; B: 0.003)" in untex(tabs[0]["foot"].replace(r"\par", " "))
    assert any("\\$\\pm\\$" not in c and "$\\pm$" in c for c in tabs[0]["rows"][1])  # A's CI
    code, text, err = compare(str(a), str(b), "--format", "rich")
    assert code == 0 and "A vs B: B against A: final validation PPL" in " ".join(text.split())


@pytest.fixture
def compare(capsys):
    """`bench compare ARGV` in-process: (exit code, stdout, stderr)."""
    def run(*argv) -> tuple[int, str, str]:
        code = cli.main(["compare", *argv])
        got = capsys.readouterr()
        return code, got.out, got.err
    return run


def test_ignore_a_field_and_one_line_errors(tmp_path, compare):
    a, _ = write_matrix(tmp_path / "a", with_probes=False, scales=("nano",), seeds=(0,))
    b, _ = write_matrix(tmp_path / "b", with_probes=False, scales=("nano",), seeds=(0,))
    # B ran half its cells at another batch size: that field varies inside B, so it is no difference of A and B
    mutate(b, lambda r: {**r, "config": {**r["config"], "train": {**r["config"]["train"], "batch_size": 4 + 4 * (
        r["activation"] == "powlu")}}})
    code, out, _ = compare(str(a), str(b))
    assert code == 0 and "unmatched: 2 in A only, 2 in B only" in out
    assert "the nearest differs in train.batch_size (4 here, 8 there)" in out
    code, out, _ = compare(str(a), str(b), "--ignore", "train.batch_size")
    assert code == 0 and "unmatched: 0 in A only, 0 in B only" in out and "Ignored when matching (--ignore)" in out
    # two matrix folders whose cells share an identity under other ids (each id counts once, so a
    # copy of the same ids would be one cell): A cannot tell which of each pair to match
    two, _ = write_matrix(tmp_path / "two", with_probes=False, scales=("nano",), seeds=(0,))
    for p in sorted(two.glob("*/record.json")):
        r = json.loads(p.read_text())
        r["id"] = r["id"] + "x"
        (two.parent / "other" / r["id"]).mkdir(parents=True)
        (two.parent / "other" / r["id"] / "record.json").write_text(json.dumps(r))
    for argv, message in (
            ([str(tmp_path / "two"), str(b)], "holds two cells with one identity"),
            ([str(a), str(a)], "A and B are the same folder"),
            ([str(a), str(b), "--ignore", "train.batch_sise"], "Did you mean 'train.batch_size'?"),
            ([str(a), "no-such-matrix"], "B 'no-such-matrix' is not a results folder, and unknown matrix"),
            ([str(a), "default", "--results", str(tmp_path / "none")], "B: no results folder")):
        code, out, err = compare(*argv)
        assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1, err
    (tmp_path / "empty").mkdir()
    code, _, err = compare(str(tmp_path / "empty"), str(b))
    assert code == 2 and "A: no finished cells under" in err
