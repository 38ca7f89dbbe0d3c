import importlib.util
import os
import sys

import pytest
import torch

# Triton kernels run on CPU tensors through Triton's interpreter (tests/test_kernels.py); the switch
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
