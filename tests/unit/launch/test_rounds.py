"""Seeds until decided (bench/launch/rounds.py): rounds through the one launcher add a seed only to the
comparisons still undecided, stop when all are decided or at K, share a baseline seed between
comparisons, and a rerun of a finished run trains nothing.

The launcher here is a stand-in that "trains" a cell by writing the record a known truth gives (a
loss per group plus seeded noise): the rounds' bookkeeping is tested without training anything.
bench/commands' tests train real cells through the same path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from bench.errors import ConfigError
from bench.launch import rounds
from bench.launch.launcher import LaunchOptions, Launched
from bench.results.design import FILE, Recorded, read_design
from bench.results.records import cell_dir
from bench.results.stats.sequential import Design
from bench.run.config.matrix import expand, load_matrix, with_seed
from bench.run.engine.folder import record_of
from bench.run.config.options import RunOptions

TRUTH = {"swiglu": 3.0, "gelu": 2.7, "polynorm": 3.0}  # gelu clearly better, polynorm the same as swiglu
NOISE = {"swiglu": 0.0, "gelu": 0.001, "polynorm": 0.03}
BASE = "swiglu:pre"


def cells_at(seeds, acts=("swiglu", "gelu", "polynorm")):
    return expand(load_matrix("default"), {"train.max_steps": 40},
                  {"scale": ["nano"], "activation": list(acts), "norm": ["pre"], "seed": list(seeds)})


def loss(act: str, seed: int) -> float:
    return TRUTH[act] + NOISE[act] * float(np.random.default_rng(1000 * seed + len(act)).standard_normal())


def record(cell, name: str) -> dict:
    act, seed = cell.config.model.activation, cell.config.seed
    v = loss(act, seed)
    return {"id": cell.id, "matrix": name, "status": "ok", "activation": act, "norm": cell.config.norm,
            "scale": cell.config.scale, "seed": seed, "config": cell.config.to_dict(),
            "params": {"total": 20_000, "non_embedding": 10_000}, "data": {"unigram_ppl": 60.0},
            "metrics": {"val_loss": v, "val_ppl": float(np.exp(v)), "steps": 40}, "wall_seconds": 1.0}


class FakeLauncher:
    """launch(): a cell without a record gets one (trained); one with a record is found done."""

    def __init__(self):
        self.trained: list[list[str]] = []
        self.how: list[LaunchOptions] = []  # each round's launch options

    def __call__(self, name, cells, opts, how=LaunchOptions(), console=None):
        self.how.append(how)
        trained, records = [], []
        for c in cells:
            path = cell_dir(opts.out, name, c.id) / "record.json"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(record(c, name)))
                trained.append(c.id)
            records.append(record_of(path.parent))
        self.trained.append(trained)
        return Launched(tuple(records), (), not how.dry_run)


@pytest.fixture
def fake(monkeypatch):
    f = FakeLauncher()
    monkeypatch.setattr(rounds, "launch", f)
    return f


def run(tmp_path: Path, k: int = 4, seeds=(0,), acts=("swiglu", "gelu", "polynorm"), dry_run=False,
        how: LaunchOptions | None = None):
    design = Recorded(Design(k))
    how = how or LaunchOptions(dry_run=dry_run)
    return rounds.until_decided("m", cells_at(seeds, acts), RunOptions(out=tmp_path, quiet=True), how, design,
                                rounds.undecided_comparisons(design, BASE))


def seeds_of(ids, act):
    return sorted(int(re.search(r"-s(\d+)-[0-9a-f]+$", i).group(1)) for i in ids if f"-{act}-" in i)


def test_rounds_add_seeds_only_to_the_undecided_comparisons_and_stop_at_k(tmp_path, fake):
    launched, cells = run(tmp_path, k=4)
    first, *later = fake.trained
    assert len(first) == 3  # the command's own cells
    added = [i for r in later for i in r]
    # gelu - swiglu (-0.3, SD 0.001) is decided at its second pair; polynorm - swiglu (0 +- 0.03) never
    # is, and goes on to K = 4 pairs; the baseline trains each added seed once, for both
    assert seeds_of(added, "gelu") == [1]
    assert seeds_of(added, "polynorm") == [1, 2, 3]
    assert seeds_of(added, "swiglu") == [1, 2, 3]
    assert len(added) == len(set(added))  # no cell twice
    assert len(launched.records) == len(cells) == 3 + len(added)
    assert read_design(tmp_path / "m") == Recorded(Design(4), started=read_design(tmp_path / "m").started)
    from bench.results.records import load_records
    from bench.results.stats.paired import compare

    found = compare(load_records(tmp_path / "m")[0], BASE, design=Design(4))
    verdicts = {k[1]: (c.verdict, len(c.shared)) for k, c in found.items() if not c.is_baseline}
    assert verdicts["gelu"] == ("better", 2)
    assert verdicts["polynorm"][1] == 4 and verdicts["polynorm"][0] in ("undecided", "equivalent")


def test_every_round_launches_the_way_the_first_did(tmp_path, fake):
    """Seeds added by later rounds go through the same --workers (or SLURM) launch as the command's
    own cells, not through the in-process default."""
    how = LaunchOptions(workers="2", devices_per_cell=1, gpu="h100-80gb")
    run(tmp_path, k=4, how=how)
    assert len(fake.how) == 4 and all(h is how for h in fake.how)  # the first round and three added


def test_a_rerun_of_a_finished_run_trains_nothing(tmp_path, fake):
    run(tmp_path, k=4)
    fake.trained.clear()
    launched, cells = run(tmp_path, k=4)
    assert fake.trained == [[]]  # one launch (the command's cells, found done), no round after it
    assert len(cells) == 3


def test_a_rerun_asking_another_k_is_refused_in_one_line(tmp_path, fake):
    run(tmp_path, k=3)
    with pytest.raises(ConfigError, match="--max-seeds 3"):
        run(tmp_path, k=5)


def test_a_dry_run_writes_no_design_and_trains_no_round(tmp_path, fake):
    run(tmp_path, k=4, dry_run=True)
    assert not (tmp_path / "m" / FILE).exists()
    assert len(fake.trained) == 1


@pytest.mark.parametrize("seed", [1, 2, 7, 31])
def test_a_cell_with_another_seed_is_the_one_the_matrix_expands(seed):
    assert [with_seed(c, seed).id for c in cells_at([0])] == [c.id for c in cells_at([seed])]
    assert [with_seed(c, seed).config.config_hash() for c in cells_at([0])] == \
        [c.config.config_hash() for c in cells_at([seed])]


@pytest.mark.parametrize("taken, want", [((), 0), ((0,), 1), ((0, 1, 3), 2), ((1, 2), 0)])
def test_the_next_seed_is_the_smallest_not_taken(taken, want):
    assert rounds.next_seed(taken) == want
