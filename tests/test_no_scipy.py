"""Without scipy (the GPU image has none) the results layer still imports, `bench run` writes its
leaderboard and exits 0 after every cell succeeded, and the CI / test columns say in one line that
they need scipy. scipy is hidden from a child process by a sitecustomize: neither its modules nor
its installed metadata can be found, as on a machine where it was never installed."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

HIDE_SCIPY = '''
import importlib.abc, importlib.metadata as md, sys

class _NoScipy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "scipy" or name.startswith("scipy."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoScipy())
_version, _distribution = md.version, md.distribution

def _hide(fn):
    def wrapped(name, *a, **k):
        if str(name).lower() == "scipy":
            raise md.PackageNotFoundError(name)
        return fn(name, *a, **k)
    return wrapped

md.version, md.distribution = _hide(_version), _hide(_distribution)
'''


def run_without_scipy(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(HIDE_SCIPY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "LITDATA_DISABLE_VERSION_CHECK": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_hiding_works(tmp_path):
    p = run_without_scipy(tmp_path, "import scipy")
    assert p.returncode != 0 and "No module named 'scipy'" in p.stderr


def test_results_import_and_tables_without_scipy(tmp_path):
    code = '''
import sys
import bench.results.report, bench.results.leaderboard, bench.results.paired, bench.results.views
import bench.results.curves, bench.results.compare_tables, bench.results.lr, bench.results.scaling
from bench.results.records import Record
from bench.results.leaderboard import to_markdown
from bench.results.scaling import scaling_fits
recs = [Record.from_dict({"id": f"{a}-s{s}", "scale": "nano", "activation": a, "norm": "pre", "seed": s,
                          "status": "ok", "metrics": {"val_loss": v + s / 100}})
        for a, v in (("swiglu", 3.0), ("gelu", 2.5)) for s in range(3)]
md = to_markdown(recs, "m")
assert "scipy" not in sys.modules
print(md)
print("FITS", scaling_fits(recs))
'''
    p = run_without_scipy(tmp_path, code)
    assert p.returncode == 0, p.stderr
    assert "need scipy, which is not installed here" in p.stdout
    swiglu, gelu = (sum(math.exp(v + s / 100) for s in range(3)) / 3 for v in (3.0, 2.5))
    assert f"| swiglu | {swiglu:.3f} (n=3) (base) |" in p.stdout  # the mean, no interval, no mark
    assert f"| gelu | {gelu:.3f} (n=3) |" in p.stdout
    assert "no test (needs scipy)" in p.stdout and "FITS []" in p.stdout


@pytest.mark.slow
def test_bench_run_without_scipy_writes_the_leaderboard_and_exits_0(tmp_path):
    code = '''
import sys
from bench.cli import main
rc = main(["run", "--scale", "nano", "--activation", "swiglu,gelu", "--norm", "pre", "--seed", "0,1",
           "--train.max_steps", "4", "--train.val_every", "2", "--train.warmup_steps", "1",
           "--train.probe_every", "0", "--train.val_tokens", "512", "--train.throughput_warmup", "1",
           "--data.ood_corpus", "none", "--out", "out"])
assert "scipy" not in sys.modules
sys.exit(rc)
'''
    p = run_without_scipy(tmp_path, code)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    board = (tmp_path / "out" / "default" / "leaderboard.md").read_text()
    assert "need scipy, which is not installed here" in board and "need scipy" in p.stdout
    assert "| swiglu |" in board and "| gelu |" in board
    assert (tmp_path / "out" / "default" / "leaderboard.csv").is_file()
