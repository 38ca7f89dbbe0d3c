import importlib.util
import os

import pytest
import torch

# Triton kernels run on CPU tensors through Triton's interpreter (tests/test_kernels.py); the switch
# is read when triton is first imported, which Lightning does: set it before anything imports it.
if importlib.util.find_spec("triton") is not None and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tiny_data import TinyDataModule  # noqa: E402

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")


@pytest.fixture
def tiny_dm():
    return TinyDataModule()
