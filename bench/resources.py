"""Where the shipped files live: configs/ (scales, recipes, matrices, baselines, eval tasks) and the
bundled corpora. A wheel carries them inside its packages (bench/configs, datamodules/bundled: see
setup.py); a source checkout reads the repository's own folders, so a checkout never holds two
copies that could drift apart."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path


@cache
def configs_dir() -> Path:
    """The configs folder: bench/configs in an installed wheel, else the checkout's configs/."""
    package = Path(str(resources.files("bench")))
    shipped = package / "configs"
    return shipped if shipped.is_dir() else package.parent / "configs"
