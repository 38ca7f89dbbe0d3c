"""Matrix files (configs/matrix/*.yaml) -> an ordered list of cells, each a resolved RunConfig.

    name: default                 # optional; defaults to the file name
    description: one line
    fixed:                        # settings for every cell (dotted config paths)
      train.max_steps: 300
    axes:                         # crossed in the order written; the last varies fastest
      activation: [swiglu, gelu]
      norm: [pre, pre+gpas]       # scheme, '+gpas' adds GPAS
      scale: [micro]
      seed: [0, 1, 2]
      model.poly_order: [2, 3]    # any config field
    exclude:                      # a cell is dropped when it matches every key of an entry
      - {activation: gelu, norm: pre+gpas}
    plugins: [my_pkg.ext]         # modules (or .py paths, relative to this file) imported first

A cell id is readable and stable: <scale>-<activation>-<norm>[-<other axes>]-s<seed>-<hash>, the
hash covering the whole resolved config, so a changed config is a different cell.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path

from models import ACTIVATIONS, check_choice

from ...errors import ConfigError, short
from ...resources import configs_dir
from .data_checks import check
from .schema import RunConfig
from .fields import all_fields
from .presets import norm_names, resolve, scales
from .yaml_files import load_yaml

MATRIX_DIR = configs_dir() / "matrix"
MATRIX_KEYS = ("name", "description", "fixed", "axes", "exclude", "plugins")
FILTER_AXES = ("scale", "activation", "norm", "seed")  # the CLI's filters: each may add an axis
# A plan this large is almost certainly a mistake (10^6 cells take hours to expand and years to train);
# BENCH_MAX_CELLS raises the limit.
MAX_CELLS = 100_000


@dataclass(frozen=True)
class Cell:
    id: str
    config: RunConfig
    axes: tuple[tuple[str, object], ...]  # this cell's value on each axis, in axis order


@dataclass
class Matrix:
    name: str
    description: str
    fixed: dict
    axes: dict[str, list]
    exclude: list[dict]
    source: str = "<inline>"
    plugins: tuple[str, ...] = ()


def matrix_path(name_or_path: str | None) -> Path:
    if name_or_path is None:
        return MATRIX_DIR / "default.yaml"
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise ConfigError(f"matrix file not found: {p}")
        if not p.is_file():
            raise ConfigError(f"matrix {p} is a folder, not a YAML file")
        return p
    known = sorted(q.stem for q in MATRIX_DIR.glob("*.yaml"))
    check_choice("matrix", name_or_path, known)
    return MATRIX_DIR / f"{name_or_path}.yaml"


def _kind(value) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "empty"}.get(type(value), type(value).__name__)


def _expect(path, key: str, value, types: tuple, expected: str) -> None:
    if not isinstance(value, types):
        raise ConfigError(f"{path}: {key} must be {expected}, got {_kind(value)} ({short(value)})")


def check_shape(raw, path) -> dict:
    """A matrix file's shape, checked once: one line naming the key and the type it must have."""
    _expect(path, "a matrix file", raw, (dict,), f"a mapping with keys {', '.join(MATRIX_KEYS)}")
    for key in raw:
        check_choice(f"matrix key in {path}", key, MATRIX_KEYS)
    for key in ("name", "description"):
        if raw.get(key) is not None:
            _expect(path, key, raw[key], (str, int, float), "a string")
    fixed, axes = raw.get("fixed") or {}, raw.get("axes") or {}
    _expect(path, "fixed", fixed, (dict,), "a mapping of setting -> value (e.g. train.max_steps: 300)")
    _expect(path, "axes", axes, (dict,), "a mapping of setting -> list of values (e.g. seed: [0, 1])")
    for k, v in axes.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{path}: axis {short(k)} must be a non-empty list, got {short(v)}")
    exclude = raw.get("exclude") or []
    _expect(path, "exclude", exclude, (list,), "a list of mappings (e.g. - {activation: gelu, norm: pre})")
    valid = list(axes) + [a for a in FILTER_AXES if a not in axes]
    for rule in exclude:
        _expect(path, "each exclude entry", rule, (dict,), "a mapping of axis -> value (e.g. {activation: gelu})")
        for key in rule:
            check_choice(f"exclude key in {path} (an axis)", key, valid)
    plugins = raw.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(f"{path}: plugins must be a list of module names or .py paths, got {short(plugins)}")
    return {"fixed": dict(fixed), "axes": dict(axes), "exclude": list(exclude), "plugins": plugins}


NAME_BYTES = 200  # a results folder's name: under the filesystems' 255, with room for '-ladder' and the like


def folder_name(name: str, what: str) -> str:
    """``name`` as one folder of --out: one path component, nothing that leaves the folder or hides in
    it. One line naming the rule otherwise (a matrix's ``name:`` is checked as --name is)."""
    try:
        size = len(os.fsencode(name))
    except (UnicodeError, TypeError):
        size = None
    if (size is None or size > NAME_BYTES or not name.strip() or name in (".", "..") or "/" in name or "\\" in name
            or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise ConfigError(f"{what} takes a folder name (one path component: no '/' or '\\', not '.' or '..', no "
                          f"control characters, at most {NAME_BYTES} bytes), got {short(name)}")
    return name


def load_matrix(name_or_path: str | None = None) -> Matrix:
    path = matrix_path(name_or_path)
    raw = load_yaml(path)
    shape = check_shape(raw, path)
    name = folder_name(str(raw.get("name") or path.stem), f"{path}: name")  # results go to OUT/<name>/
    from ...plugins import load_plugins  # before the axes are checked: they may name plugin parts

    load_plugins(shape["plugins"], f"matrix {path}", Path(path).parent)
    return Matrix(name, str(raw.get("description") or ""), shape["fixed"],
                  shape["axes"], shape["exclude"], str(path), tuple(shape["plugins"]))


def check_axis_values(axis: str, values: list) -> None:
    """Unknown names fail before anything runs."""
    if axis == "activation":
        for v in values:
            check_choice("activation", v, ACTIVATIONS)
    elif axis == "norm":
        for v in values:
            check_choice("norm scheme", v, norm_names())
    elif axis == "scale":
        for v in values:
            check_choice("scale", v, scales())
    elif axis not in ("seed", "recipe"):
        check_choice("matrix axis", axis, list(all_fields()) + ["activation", "norm"])


def _matches(combo: dict, rule: dict) -> bool:
    return all(str(combo.get(k)) == str(v) for k, v in rule.items())


def _slug(value) -> str:
    return str(value).replace("+", "_").replace("/", "_").replace(" ", "")


def cell_id(cfg: RunConfig, combo: dict) -> str:
    parts = [cfg.scale, cfg.model.activation, cfg.norm.replace("+", "_")]
    parts += [f"{k.split('.')[-1]}{_slug(v)}" for k, v in combo.items()
              if k not in ("scale", "activation", "model.activation", "norm", "seed")]
    parts += [f"s{cfg.seed}", cfg.config_hash()[:6]]
    return "-".join(parts)


def matrix_size(axes: dict[str, list]) -> int:
    return math.prod(len(v) for v in axes.values())


def check_size(name: str, axes: dict[str, list]) -> int:
    """Refuse, before expanding anything, a matrix too large to plan; one line."""
    n, limit = matrix_size(axes), int(os.environ.get("BENCH_MAX_CELLS") or MAX_CELLS)
    if n > limit:
        sizes = " x ".join(f"{len(v)} {k}" for k, v in axes.items())
        raise ConfigError(f"matrix {name} has {n:,} cells ({sizes}), more than the {limit:,} a plan holds: narrow "
                          "it (fewer values, --scale/--activation/--norm/--seed) or set BENCH_MAX_CELLS")
    return n


def make_cell(settings: dict, overrides: dict | None, combo: dict) -> Cell:
    """One cell: resolved (pure), checked against its data (which decides the vocabulary), then named."""
    cfg = check(resolve(settings, overrides))
    return Cell(cell_id(cfg, combo), cfg, tuple(combo.items()))


def with_seed(cell: Cell, seed: int) -> Cell:
    """The same cell with another seed: its config's seed, its seed axis (kept in place) and so its id,
    exactly as the matrix would have expanded it with that seed."""
    cfg = copy.deepcopy(cell.config)
    cfg.seed = int(seed)
    combo = dict(cell.axes)
    combo["seed"] = int(seed)
    return Cell(cell_id(cfg, combo), cfg, tuple(combo.items()))


def expand(matrix: Matrix, overrides: dict | None = None, only: dict | None = None) -> list[Cell]:
    """Every cell of the matrix in a stable order. ``overrides`` apply to every cell;
    ``only`` replaces an axis's values (the CLI's --scale/--activation/--norm filters)."""
    axes = dict(matrix.axes)
    for axis, values in (only or {}).items():
        axes[axis] = list(values)
    check_size(matrix.name, axes)
    for axis, values in axes.items():
        check_axis_values(axis, values)
    for k in matrix.fixed:
        check_axis_values(k, [matrix.fixed[k]]) if k in ("activation", "norm", "scale") else None
    cells, seen = [], set()
    names = list(axes)
    for values in itertools.product(*(axes[n] for n in names)):
        combo = dict(zip(names, values))
        if any(_matches(combo, rule) for rule in matrix.exclude):
            continue
        cell = make_cell({**matrix.fixed, **combo}, overrides, combo)
        if cell.id in seen:
            continue
        seen.add(cell.id)
        cells.append(cell)
    return cells


def cell_to_dict(cell: Cell) -> dict:
    """A cell as JSON-ready data: id, axes (in order) and the resolved config."""
    return {"id": cell.id, "axes": [[k, v] for k, v in cell.axes], "config": cell.config.to_dict()}


def cell_from_dict(d: dict) -> Cell:
    """The inverse of ``cell_to_dict``: the same id, axes and config (hash included)."""
    return Cell(str(d["id"]), RunConfig.from_dict(d["config"]), tuple((str(k), v) for k, v in d["axes"]))


Cell.to_dict = cell_to_dict
Cell.from_dict = staticmethod(cell_from_dict)


def axis_order(cells: list[Cell]) -> dict:
    """{axis: its values in matrix order} over the expanded matrix (first appearance)."""
    order: dict = {}
    for cell in cells:
        for axis, value in dict(cell.axes).items():
            values = order.setdefault(axis, [])
            if value not in values:
                values.append(value)
    return order
