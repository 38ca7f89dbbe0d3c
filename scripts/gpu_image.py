"""What the GPU machines' image holds (scripts/gpu-image-packages.txt, the one list to edit when the image
changes), what the device check must therefore carry as wheels, and a rule that makes a CPU dry run see
only what the GPU machine will have.

    python scripts/gpu_image.py wheels          NAME==VERSION of each distribution to carry, one a line
    python scripts/gpu_image.py hide SITE_DIR   SITE_DIR/sitecustomize.py: every installed distribution
                                                that is neither on the image nor carried is unimportable

What the check needs is the harness's own needs (pyproject.toml's dependencies and its `gpu` extra) and
litdata, with everything those require, read from this environment's installed metadata; each carried
distribution at the version installed here (or, if it is not installed here, the one .ci/run pins: CI
tests with that one). The image's distributions bring their own needs.

The rule, installed by the sitecustomize (which loads it from this file: it is written once), wraps every
sys.meta_path finder so that no top-level module among the hidden distributions' files is found (an import
fails, importlib.util.find_spec answers None; the same name elsewhere on the path, e.g. vendored inside an
image package, still is) and importlib.metadata finds none of their metadata: as on a machine where they
were never installed. An uncaught import error of such a module names its distribution and why it is
missing. The standard library and the project stay importable.
Nothing here imports beyond the standard library at module level: it runs at every interpreter start.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE_LIST = ROOT / "scripts" / "gpu-image-packages.txt"
PROJECT = "llm-arch-bench"
# litdata is installed without its declared needs (install.sh: torchvision, obstore and tifffile are never
# imported); pyproject.toml's dependencies list the ones it imports.
WITHOUT_NEEDS = {"litdata": "install.sh installs it with --no-deps"}
WHY = "not on the GPU image (scripts/gpu-image-packages.txt) nor carried by scripts/device-wheels.sh"


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages(path: Path = IMAGE_LIST) -> set[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {normalize(line) for line in lines if line}


def ci_pins(path: Path = ROOT / ".ci" / "run") -> dict[str, str]:
    """NAME==VERSION pins that .ci/run installs on top of install.sh (torchao, triton)."""
    return {normalize(n): v for n, v in re.findall(r"[\"' ]([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+-]+)", path.read_text())}


def roots() -> list[str]:
    """The requirement strings the device check's imports come from."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["gpu"], *WITHOUT_NEEDS]


def needed(image: set[str]) -> dict[str, str]:
    """normalized name -> version of every distribution the check needs that the image lacks: the roots and,
    recursively, what those require (markers evaluated for the image's Python 3.12 on Linux, no extras)."""
    from packaging.requirements import Requirement

    env = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "extra": ""}
    pins, out = ci_pins(), {}
    todo = list(roots())
    while todo:
        req = Requirement(todo.pop())
        name = normalize(req.name)
        if name in image or name in out or (req.marker is not None and not req.marker.evaluate(env)):
            continue
        try:
            out[name] = md.version(name)
            requires = [] if name in WITHOUT_NEEDS else (md.requires(name) or [])
        except md.PackageNotFoundError:
            if name not in pins:
                raise SystemExit(f"error: the device check needs {req.name}, which the GPU image lacks and which is "
                                 "neither installed here nor pinned in .ci/run: no version to carry") from None
            out[name], requires = pins[name], []  # the one CI installs; its needs cannot be read here
        todo += requires
    return dict(sorted(out.items()))


def allowed() -> set[str]:
    image = image_packages()
    return image | set(needed(image)) | {PROJECT}


def top_levels(dist) -> set[str]:
    """The top-level module names a distribution installs (declared in top_level.txt, or read off its files)."""
    import inspect

    names = set((dist.read_text("top_level.txt") or "").split())
    for f in dist.files or ():
        top = f.parts[0] if len(f.parts) > 1 else inspect.getmodulename(f.name)
        if top and "." not in top and top != "..":
            names.add(top)
    return names


def module_paths(hidden: set[str]) -> dict[str, str]:
    """'<site-packages>/<top-level module>' -> distribution, for the installed distributions in ``hidden``; a
    path that another distribution installs too (a shared namespace package) stays visible."""
    owned, shared = {}, set()
    for dist in md.distributions():
        name = normalize(dist.metadata["Name"] or "")
        site = str(dist.locate_file("")).rstrip(os.sep)
        for top in top_levels(dist):
            key = site + os.sep + top
            if name in hidden:
                owned[key] = name
            else:
                shared.add(key)
    return {key: name for key, name in sorted(owned.items()) if key not in shared}


def write_site(folder: Path, paths: dict[str, str], why: str = WHY) -> Path:
    """folder/sitecustomize.py, hiding the modules at ``paths`` (module_paths) and their distributions'
    metadata from every process that has folder first on its PYTHONPATH; ``why`` ends their import errors."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hidden.json").write_text(json.dumps({"paths": paths, "why": why}, indent=0))
    path = folder / "sitecustomize.py"
    path.write_text(
        "# written by scripts/gpu_image.py: the rule that hides what the GPU machine will not have\n"
        "import importlib.util, json, pathlib\n"
        f"_spec = importlib.util.spec_from_file_location('_gpu_image', {str(Path(__file__).resolve())!r})\n"
        "_rule = importlib.util.module_from_spec(_spec)\n"
        "_spec.loader.exec_module(_rule)\n"
        "_rule.hide(**json.loads((pathlib.Path(__file__).parent / 'hidden.json').read_text()))\n")
    return path


class Without:
    """A meta-path finder as it would be without the hidden distributions: a module it finds among their files
    is not found (importlib.util.find_spec answers None, as for a module never installed; the same name found
    elsewhere, e.g. vendored inside another package, still is), and none of their metadata is found."""

    def __init__(self, finder, paths: dict[str, str]):
        self.finder, self.paths, self.dists = finder, paths, set(paths.values())
        self.sites = {key.rpartition(os.sep)[0] + os.sep for key in paths}

    def site(self, spec) -> str | None:
        """The site-packages folder (with a trailing separator) where ``spec`` is a hidden module, or None."""
        where = spec.origin if spec.has_location else next(iter(spec.submodule_search_locations or ()), None)
        for site in self.sites if where else ():
            if where.startswith(site) and site + where[len(site):].split(os.sep)[0].split(".")[0] in self.paths:
                return site
        return None

    def find_spec(self, name, path=None, target=None):
        spec = self.finder.find_spec(name, path, target)
        site = spec and self.site(spec)
        if site:  # the same name further along the path (e.g. a copy vendored inside another package)
            rest = [p for p in (sys.path if path is None else path) if os.path.join(p, "") != site]
            spec = self.finder.find_spec(name, rest, target)
            spec = None if spec is None or self.site(spec) else spec
        return spec

    def find_distributions(self, *args, **kwargs):
        find = getattr(self.finder, "find_distributions", None)
        for dist in find(*args, **kwargs) if find else ():
            name = dist.metadata["Name"]
            if name is None or normalize(name) not in self.dists:
                yield dist

    def __getattr__(self, attr):
        return getattr(self.finder, attr)

    def __repr__(self):
        return f"Without({self.finder!r})"


def hide(paths: dict[str, str], why: str = WHY) -> None:
    """Install the rule in this process: every finder wrapped in ``Without``, and an uncaught import error of a
    hidden module says which distribution it is and why it is missing."""
    sys.meta_path[:] = [Without(f, paths) for f in sys.meta_path]
    modules = {key.rpartition(os.sep)[2]: dist for key, dist in paths.items()}
    hook = sys.excepthook

    def explain(kind, error, tb):
        dist = modules.get((getattr(error, "name", None) or "").partition(".")[0])
        if isinstance(error, ModuleNotFoundError) and dist is not None:
            error.msg = f"{error.msg}: {dist} is {why}"  # what ImportError prints
        hook(kind, error, tb)

    sys.excepthook = explain


def main(argv: list[str]) -> int:
    if argv[:1] == ["wheels"] and len(argv) == 1:
        for name, version in needed(image_packages()).items():
            print(f"{name}=={version}")
        return 0
    if argv[:1] == ["hide"] and len(argv) == 2:
        keep = allowed()
        installed = {normalize(d.metadata["Name"] or "") for d in md.distributions()}
        write_site(Path(argv[1]), module_paths(installed - keep))
        print(f"only the GPU image's {len(image_packages())} distributions, the carried "
              f"{', '.join(sorted(keep - image_packages() - {PROJECT}))} and the project importable")
        return 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
