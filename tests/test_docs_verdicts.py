"""Every command in docs/verdicts.md's ```bash blocks runs: as written, or scaled down as the table below
says. A command this file neither runs nor lists fails the coverage test, so a new example cannot land
untested. They run in order, in one temporary folder (the docs' `results/` is its results/), through
`bench`'s entry point in this process."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from bench import cli

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "verdicts.md"

# Appended to a training command: 2 optimizer steps, one small validation, no probes.
FAST = ("--train.max_steps 2 --train.val_every 2 --train.val_tokens 1024 --train.warmup_steps 0 "
        "--train.probe_every 0 --ckpt-every 0 --quiet")
AS_WRITTEN = {
    "bench claims gpas --scale gpas-71m --dry-run",
    "bench report results/claims-polycom",
}
SUBSTITUTE = {  # doc command -> (what runs instead; why)
    "bench run --scale nano --activation swiglu,gelu --norm pre --tune lr --tune-points 5 --tune-decades 1": (
        f"bench run --scale nano --activation swiglu,gelu --norm pre --tune lr --tune-points 2 --tune-decades 1 {FAST}",
        "2 LRs, 2 steps"),
    "bench run --scale nano --activation swiglu,gelu --norm pre --until-decided --max-seeds 4": (
        f"bench run --scale nano --activation swiglu,gelu --norm pre --until-decided --max-seeds 4 {FAST}",
        "2 steps"),
    "bench claims polycom --scale nano --until-decided --max-seeds 3": (
        f"bench claims polycom --scale nano --until-decided --max-seeds 3 {FAST}", "2 steps"),
}


def doc_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S)
    return [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip() and not ln.startswith("#")]


def test_every_command_of_the_doc_is_run_or_substituted():
    commands = doc_commands()
    assert commands, "docs/verdicts.md shows no command"
    assert [c for c in commands if c not in AS_WRITTEN and c not in SUBSTITUTE] == []
    assert set(AS_WRITTEN) | set(SUBSTITUTE) == set(commands)  # nothing stale here either


@pytest.mark.slow
def test_the_doc_commands_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for command in doc_commands():
        line = command if command in AS_WRITTEN else SUBSTITUTE[command][0]
        argv = shlex.split(line)
        assert argv[0] == "bench"
        code = cli.main(argv[1:])
        text = capsys.readouterr()
        assert code == 0, f"{line}\n{text.out[-2000:]}\n{text.err[-2000:]}"
    assert (tmp_path / "results" / "claims-polycom" / "report.html").exists()
    assert list((tmp_path / "results" / "claims-polycom" / "claims").glob("polycom-*.json"))
