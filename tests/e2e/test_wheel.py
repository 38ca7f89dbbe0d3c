"""The harness as a wheel: built with `python -m build`, installed in a fresh venv outside the
repository, it finds its scales, recipes, matrices, baseline and bundled corpora as package data and
runs `bench list`, `bench plan` and a nano `bench run`."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                         env={**env, "LITDATA_DISABLE_VERSION_CHECK": "1"}, **kw)
    assert out.returncode == 0, f"{cmd}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the fresh venv's python, a work folder outside the repository)."""
    pytest.importorskip("build")
    tmp = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp / "dist"), str(ROOT)], ROOT)
    wheel = next((tmp / "dist").glob("llm_arch_bench-*.whl"))
    run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], tmp)
    python = tmp / "venv" / "bin" / "python"
    # the dependencies (torch, lightning, ...) come from this environment's site-packages, read as plain
    # folders (no .pth of theirs runs, so this checkout's editable install is not on the path)
    purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       tmp).stdout.strip())
    (purelib / "deps.pth").write_text("\n".join(p for p in [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
                                                if "site-packages" in p) + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], tmp)
    work = tmp / "work"
    work.mkdir()
    where = run([str(python), "-c", "import bench, datamodules; print(bench.__file__, datamodules.__file__)"], work)
    assert str(ROOT) not in where.stdout and str(tmp / "venv") in where.stdout, where.stdout
    return python, work


def bench(installed, *argv: str) -> subprocess.CompletedProcess:
    python, work = installed
    return run([str(python), "-m", "bench.cli", *argv], work)


def test_list_and_plan_from_the_wheel(installed):
    listed = json.loads(bench(installed, "list", "--json").stdout)
    assert {"default", "zoo", "moe"} <= set(listed["matrices"]) and "nano" in listed["scales"]
    plan = json.loads(bench(installed, "plan", "default", "--json").stdout)
    ids = subprocess.run([sys.executable, "-c", "from bench.run.config.matrix import expand, load_matrix; "
                          "print('\\n'.join(c.id for c in expand(load_matrix('default'))))"], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1"})
    assert [r["id"] for r in plan["cells"]] == ids.stdout.split()  # the same cells, the same ids


def test_a_nano_run_from_the_wheel_uses_the_bundled_corpus(installed):
    python, work = installed
    bench(installed, "run", "--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--train.max_steps", "4",
          "--train.val_every", "4", "--train.val_tokens", "512", "--train.probe_every", "0", "--ckpt-every", "0",
          "--out", "results", "--quiet")
    records = list((work / "results").rglob("record.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    assert rec["status"] == "ok" and rec["data"]["vocab_size"] == 256 and rec["metrics"]["val_loss"] > 0


def test_the_report_template_ships_in_the_wheel(installed):
    python, work = installed
    code = ("from bench.results.report import template; print(template().render(title='t', cells=0, statuses='', "
            "generated='', sections=[]).count('<h1>t: benchmark report</h1>'))")
    assert run([str(python), "-c", code], work).stdout.strip() == "1"
