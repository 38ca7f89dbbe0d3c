"""`bench claims` and --until-decided on the commands that train: exactly the claims' cells trained
through the one launcher, one verdict per claim printed and kept under the claims file's hash, and a
rerun that trains nothing; the options' bad values are one line before anything trains."""

from __future__ import annotations

import json
import re

import pytest

from bench import cli
from bench.results.paper_claims import load_claims

FAST = ["--train.val_tokens", "2048", "--train.val_every", "40", "--train.probe_every", "0", "--ckpt-every", "0",
        "--quiet"]


def cell_times(folder):
    return {p.parent.name: p.stat().st_mtime_ns for p in folder.glob("*/record.json")}


@pytest.mark.slow
def test_claims_until_decided_prints_one_verdict_per_claim_and_a_rerun_trains_nothing(tmp_path, capsys):
    argv = ["claims", "polycom", "--scale", "nano", "--train.max_steps", "40", "--until-decided", "--max-seeds", "3",
            "--out", str(tmp_path), *FAST]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    claims = load_claims("polycom")
    folder = tmp_path / "claims-polycom"
    trained = cell_times(folder)
    # exactly the claims' cells: 4 groups at seed 0, and seeds 1..2 only for comparisons still undecided
    assert {i.split("-")[1] for i in trained} == {"polynorm", "polyrelu", "swiglu", "relu"}
    assert all(int(re.search(r"-s(\d+)-[0-9a-f]+$", i).group(1)) <= 2 for i in trained)
    (stored,) = (folder / "claims").glob("*.json")
    data = json.loads(stored.read_text())
    assert stored.name == f"polycom-{claims.digest}.json" and data["claims_hash"] == claims.digest
    ids = [e["claim"] for e in data["verdicts"]]
    assert sorted(set(ids)) == sorted(c.id for c in claims.claims) and len(ids) == 4  # polycom-vs-relu has 2 arms
    for e in data["verdicts"]:
        assert e["outcome"] in ("reproduced", "not reproduced", "undecided", "not learned")
        assert e["verdict"].startswith(e["outcome"]) and e["claims_hash"] == claims.digest
    flat = " ".join(text.split())
    assert all(c.id in flat for c in claims.claims) and claims.digest in flat
    assert cli.main(argv) == 0  # the rerun: every cell found, no round adds one
    again = " ".join(capsys.readouterr().out.split())
    assert cell_times(folder) == trained
    assert "cells of claims-polycom are done" in again and "round 2" not in again


@pytest.mark.parametrize("extra, said", [
    (["--max-seeds", "3"], "--max-seeds sets the design of --until-decided"),
    (["--until-decided", "--max-seeds", "1"], "--max-seeds takes 2 to"),
    (["--until-decided", "--max-seeds", "2", "--seed", "0,1,2"], "more than --max-seeds 2"),
    (["--until-decided", "--slurm"], "needs --wait"),
])
@pytest.mark.parametrize("command", ["run", "ladder", "claims"])
def test_until_decided_options_are_checked_in_one_line_before_anything_trains(command, extra, said, tmp_path, capsys):
    target = {"run": [], "ladder": [], "claims": ["polycom"]}[command]
    assert cli.main([command, *target, "--scale", "nano", "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert said in " ".join(err.split()) and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_claims_dry_run_lists_exactly_the_claims_cells(tmp_path, capsys):
    assert cli.main(["claims", "gpas", "--scale", "nano", "--out", str(tmp_path), "--dry-run"]) == 0
    text = capsys.readouterr().out
    listed = [ln.strip() for ln in text.splitlines() if ln.startswith("  nano-")]
    assert len(listed) == 10  # 5 schemes, each with and without GPAS, one seed
    assert {i.split("-")[2] for i in listed} == {"pre", "pre_gpas", "sandwich", "sandwich_gpas", "mixln",
                                                 "mixln_gpas", "lns", "lns_gpas", "deepnorm", "deepnorm_gpas"}
    assert not (tmp_path / "claims-gpas").exists() or not any((tmp_path / "claims-gpas").glob("*/record.json"))


def test_an_override_of_a_claims_setting_is_one_line(tmp_path, capsys):
    """powlu's claims read FFN probes sampled every 25 steps: --train.probe_every 0 would leave them no data."""
    assert cli.main(["claims", "powlu", "--out", str(tmp_path), "--train.probe_every", "0", "--dry-run"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--train.probe_every 0 changes a setting claim powlu-outliers of powlu is judged at" in err
