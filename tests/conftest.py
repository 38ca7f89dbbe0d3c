import os

import pytest

from tiny_data import TinyDataModule

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")


@pytest.fixture
def tiny_dm():
    return TinyDataModule()
