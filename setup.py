"""Packaging beyond pyproject.toml: a wheel carries the repository's configs/ as bench/configs and the
bundled corpora (data/*.jsonl.xz) as datamodules/bundled, read with importlib.resources
(bench/resources.py, datamodules/corpus.py). A source checkout reads configs/ and data/ in place, so
the paths users type from the repository root (configs/matrix/default.yaml, --include-path
configs/eval) stay what they are and no second copy can drift."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = {  # repository folder -> (package folder in the wheel, files)
    "configs": ("bench/configs", ["**/*.yaml", "**/*.json", "**/*.py"]),
    "data": ("datamodules/bundled", ["*.jsonl.xz", "README.md"]),
}


class BuildWithData(build_py):
    def run(self):
        super().run()
        for source, (target, patterns) in SHIPPED.items():
            for pattern in patterns:
                for path in sorted((HERE / source).glob(pattern)):
                    if "__pycache__" in path.parts or not path.is_file():
                        continue
                    dest = Path(self.build_lib) / target / path.relative_to(HERE / source)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, dest)


setup(cmdclass={"build_py": BuildWithData})
