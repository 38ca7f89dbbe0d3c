"""Each optional package (bench/errors.py OPTIONAL) serves one command or setting. Hidden from a child process
by scripts/gpu_image.py's rule (neither its modules nor its metadata found, as where it was never installed),
a nano cell still trains through `bench run`, and the command that needs it fails with one line naming the
extra to install, exit 2. pyproject.toml's extras hold each package under the extra that line names."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from bench.errors import OPTIONAL

ROOT = Path(__file__).resolve().parents[2]
NANO = ["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--seed", "0"]
TRAIN = ["--train.max_steps", "4", "--train.val_every", "2", "--train.warmup_steps", "1", "--train.probe_every", "0",
         "--train.val_tokens", "512", "--train.throughput_warmup", "1", "--data.ood_corpus", "none"]


def rule():
    spec = importlib.util.spec_from_file_location("gpu_image", ROOT / "scripts" / "gpu_image.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_hiding(tmp_path: Path, modules: list[str], code: str) -> subprocess.CompletedProcess:
    """``code`` in a child process where the distributions of ``modules`` (keys of OPTIONAL) are hidden."""
    gpu_image = rule()
    dists = {gpu_image.normalize(OPTIONAL[m][0]) for m in modules}
    gpu_image.write_site(tmp_path / "rule", gpu_image.module_paths(dists), why="hidden by the test")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "rule"), str(ROOT)]),
           "LITDATA_DISABLE_VERSION_CHECK": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


def test_each_extra_holds_its_package_and_no_hard_dependency_does():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = lambda reqs: {Requirement(r).name.lower() for r in reqs}  # noqa: E731
    hard = names(project["dependencies"])
    for module, (dist, extra) in OPTIONAL.items():
        assert dist in names(project["optional-dependencies"][extra]), (module, extra)
        assert dist not in hard, dist


def test_the_message_names_the_extra():
    from bench.errors import ConfigError, need

    OPTIONAL["no_such_module_here"] = ("no-such-dist", "extras")
    try:
        with pytest.raises(ConfigError) as e:
            need("no_such_module_here", "bench frobnicate")
    finally:
        del OPTIONAL["no_such_module_here"]
    assert str(e.value) == "bench frobnicate needs no-such-dist: pip install 'llm-arch-bench[extras]'"
    need("jinja2", "bench report")  # installed here: nothing raised


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A nano cell trained through `bench run` with every optional package hidden: its matrix folder."""
    tmp = tmp_path_factory.mktemp("trained")
    code = f"""
import sys
from bench.cli import main
rc = main(["run", *{NANO!r}, *{TRAIN!r}, "--out", "out"])
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in {sorted(OPTIONAL)!r})
assert not loaded, loaded
sys.exit(rc)
"""
    p = run_hiding(tmp, list(OPTIONAL), code)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return tmp / "out" / "default"


@pytest.mark.slow
def test_a_nano_cell_trains_without_any_optional_package(trained):
    assert (trained / "leaderboard.md").is_file()
    assert "| swiglu |" in (trained / "leaderboard.md").read_text()


FAKE_HOPPER = """
import torch
torch.cuda.is_available = lambda: True
torch.cuda.get_device_capability = lambda *a: (9, 0)
torch.cuda.get_device_name = lambda *a: "NVIDIA H100 80GB HBM3"
"""


def command(module: str, results: Path) -> tuple[list[str], str]:
    """A command that needs ``module`` (run on the trained cell's folder where it reads results), its line."""
    extras = "pip install 'llm-arch-bench[extras]'"
    return {
        "submitit": (["run", *NANO, "--slurm", "--out", "fresh"], f"error: --slurm needs submitit: {extras}"),
        "lm_eval": (["eval", str(results), "--tasks", "local_arc_easy", "--include-path", str(ROOT / "configs/eval")],
                    "error: bench eval needs lm-eval: pip install 'llm-arch-bench[eval]'"),
        "jinja2": (["report", str(results)], f"error: bench report needs jinja2: {extras}"),
        "matplotlib": (["report", str(results)], f"error: bench report needs matplotlib: {extras}"),
        "torchao": (["run", *NANO, "--train.precision", "fp8", "--out", "fresh"],
                    "error: fp8: fp8 training needs torchao: pip install 'llm-arch-bench[gpu]'"),
    }[module]


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(OPTIONAL))
def test_the_command_that_needs_it_fails_in_one_line(tmp_path, trained, module):
    argv, line = command(module, trained)
    before = sorted((p, p.stat().st_mtime_ns) for p in trained.rglob("*"))
    code = (FAKE_HOPPER if module == "torchao" else "") + f"""
import sys
from bench.cli import main
rc = main({argv!r})
assert {module!r} not in sys.modules
sys.exit(rc)
"""
    p = run_hiding(tmp_path, [module], code)
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-3000:]
    assert [x for x in p.stderr.splitlines() if x.strip()] == [line], p.stderr
    assert not (tmp_path / "fresh").exists()  # nothing trained or submitted
    assert sorted((p, p.stat().st_mtime_ns) for p in trained.rglob("*")) == before  # nor any result touched
