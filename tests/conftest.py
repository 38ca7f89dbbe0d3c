"""What every test shares: `bench_cli` (the CLI in-process, or in a subprocess when asked), `one_line_error`
(a bad input is exit 2 and one line), `tiny_dm`, the registries restored after each test, and the `slow`
marker laid on everything under tests/e2e/ and benchmarks/ (`pytest -m "not slow"` is the edit-test loop)."""

import contextlib
import dataclasses
import importlib.util
import io
import re
import os
import subprocess as sp
import sys
from pathlib import Path

import pytest
import torch

# Triton kernels run on CPU tensors through Triton's interpreter (tests/unit/models/test_kernels.py); the switch
# is read when triton is first imported, which Lightning does: set it before anything imports it.
if importlib.util.find_spec("triton") is not None and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tiny_data import TinyDataModule  # noqa: E402

# Under pytest-xdist each worker, and every process its tests start, takes one thread: the suite runs one
# worker per core, and two OpenMP pools spinning on each core would slow every test.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")

ROOT = Path(__file__).resolve().parent.parent
# whole folders that start processes, kill them, or run the harness at full length (the speed benchmarks);
# tests/test_readme.py runs every README command
SLOW_PLACES = (ROOT / "tests" / "e2e", ROOT / "benchmarks", ROOT / "tests" / "test_readme.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(item.path == p or p in item.path.parents for p in SLOW_PLACES):
            item.add_marker(pytest.mark.slow)


WARNING = re.compile(r"^\S.*:\d+: \w*Warning: ")


@dataclasses.dataclass
class Ran:
    """What `bench ARGV` did: the fields of subprocess.CompletedProcess the tests read."""

    returncode: int
    stdout: str
    stderr: str

    def __iter__(self):  # code, out, err = bench_cli(...)
        return iter((self.returncode, self.stdout, self.stderr))


def run_bench(*argv, subprocess: bool = False, cwd=None, env: dict | None = None, timeout: float = 600) -> Ran:
    """`bench ARGV`: in this process by default (`bench.cli.main`, stdout and stderr captured), or with
    ``subprocess=True`` as `python -m bench.cli` importing this tree, for what only a process can show
    (its exit by a signal, its own imports, a child it starts)."""
    argv = [str(a) for a in argv]
    if subprocess:
        r = sp.run([sys.executable, "-m", "bench.cli", *argv], cwd=cwd or ROOT, capture_output=True, text=True,
                   timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
        return Ran(r.returncode, r.stdout, r.stderr)
    from bench import cli

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        for k, v in (env or {}).items():
            mp.setenv(k, v)
        if cwd is not None:
            mp.chdir(cwd)
        code = cli.main(argv)
    return Ran(code, out.getvalue(), err.getvalue())


def assert_one_line_error(ran: Ran, *needles: str) -> str:
    """A bad input: exit 2, no traceback, one line on stderr (Python warnings aside) holding every needle;
    returns that line with its wrapping undone."""
    lines, shown = [], ran.stderr.splitlines()
    for i, ln in enumerate(shown):  # a warning is its `FILE:LINE: XWarning: ...` line and its indented source line
        if WARNING.match(ln) or (i and WARNING.match(shown[i - 1]) and ln[:1].isspace()):
            continue
        if ln.strip():
            lines.append(ln)
    assert ran.returncode == 2 and "Traceback" not in ran.stderr, ran.stderr[-3000:]
    assert len(lines) == 1, ran.stderr[-3000:]
    line = " ".join(lines[0].split())
    for n in needles:
        assert n in line, (n, line)
    return line


@pytest.fixture(scope="session")
def bench_cli():
    """bench_cli(*argv, subprocess=False, cwd=None, env=None, timeout=600) -> Ran(returncode, stdout, stderr)."""
    return run_bench


@pytest.fixture(scope="session")
def one_line_error():
    """one_line_error(ran, *needles) -> the one error line of a `bench_cli` result that exited 2."""
    return assert_one_line_error


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A folder of source files in every format `bench data prepare` reads, and their documents in order."""
    from corpus_files import write_sources

    folder = tmp_path_factory.mktemp("src")
    return folder, write_sources(folder)


@pytest.fixture(scope="module")
def packed(tmp_path_factory, sources):
    """``sources`` prepared with the bytes tokenizer, a tenth held out for validation."""
    from datamodules.prepare import prepare

    out = tmp_path_factory.mktemp("packed") / "ds"
    prepare(str(sources[0]), "bytes", out, workers=2, val_fraction=0.1)
    return out


@pytest.fixture
def tiny_dm():
    return TinyDataModule()


@pytest.fixture(autouse=True)
def restore_registries(monkeypatch):
    """Undo every registration, loaded plugin and BENCH_PLUGINS export a test makes: a test that loads a
    plugin (through `bench` in-process) would otherwise leave its parts in the registries of every later
    test in the same process."""
    from bench import plugins
    from bench.run.config.probes import PROBES
    from bench.run.engine.probes import registry  # noqa: F401 - the built-in probes, registered at import, stay
    from models import ACTIVATIONS, GPAS_EXTENSIONS, NORMS, SCHEMES

    regs = (ACTIVATIONS, SCHEMES, NORMS, PROBES)
    saved = [(dict(r), dict(r.docs), dict(r._parts)) for r in regs]
    ext, loaded, modules = set(GPAS_EXTENSIONS), dict(plugins.LOADED), set(sys.modules)
    monkeypatch.delenv(plugins.ENV, raising=False)
    yield
    for r, (items, docs, parts) in zip(regs, saved):
        r.clear(), r.docs.clear(), r._parts.clear()
        r.update(items), r.docs.update(docs), r._parts.update(parts)
    GPAS_EXTENSIONS.clear(), GPAS_EXTENSIONS.update(ext)
    plugins.LOADED.clear(), plugins.LOADED.update(loaded)
    for name in set(sys.modules) - modules:
        if name in ("my_ext", "ep_ext") or name.startswith(("bad_", "clash_")):
            del sys.modules[name]
