import importlib.util
import os

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
