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

import itertools
from dataclasses import dataclass
from pathlib import Path

from models import ACTIVATIONS, check_choice

from .config import CONFIGS, ConfigError, RunConfig, all_fields, load_yaml, norm_names, resolve, scales

MATRIX_DIR = CONFIGS / "matrix"
MATRIX_KEYS = ("name", "description", "fixed", "axes", "exclude", "plugins")


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
        return p
    known = sorted(q.stem for q in MATRIX_DIR.glob("*.yaml"))
    check_choice("matrix", name_or_path, known)
    return MATRIX_DIR / f"{name_or_path}.yaml"


def load_matrix(name_or_path: str | None = None) -> Matrix:
    path = matrix_path(name_or_path)
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a matrix file is a mapping with keys {', '.join(MATRIX_KEYS)}")
    for key in raw:
        check_choice(f"matrix key in {path}", key, MATRIX_KEYS)
    plugins = raw.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(f"{path}: plugins must be a list of module names or .py paths, got {plugins!r}")
    from ..plugins import load_plugins  # before the axes are checked: they may name plugin parts

    load_plugins(plugins, f"matrix {path}", Path(path).parent)
    axes = raw.get("axes") or {}
    for k, v in axes.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{path}: axis {k!r} must be a non-empty list, got {v!r}")
    return Matrix(str(raw.get("name") or path.stem), str(raw.get("description", "")),
                  dict(raw.get("fixed") or {}), dict(axes), list(raw.get("exclude") or []), str(path), tuple(plugins))


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


def expand(matrix: Matrix, overrides: dict | None = None, only: dict | None = None) -> list[Cell]:
    """Every cell of the matrix in a stable order. ``overrides`` apply to every cell;
    ``only`` replaces an axis's values (the CLI's --scale/--activation/--norm filters)."""
    axes = dict(matrix.axes)
    for axis, values in (only or {}).items():
        axes[axis] = list(values)
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
        cfg = resolve({**matrix.fixed, **combo}, overrides)
        cid = cell_id(cfg, combo)
        if cid in seen:
            continue
        seen.add(cid)
        cells.append(Cell(cid, cfg, tuple(combo.items())))
    return cells


def cell_to_dict(cell: Cell) -> dict:
    """A cell as JSON-ready data: id, axes (in order) and the resolved config."""
    return {"id": cell.id, "axes": [[k, v] for k, v in cell.axes], "config": cell.config.to_dict()}


def cell_from_dict(d: dict) -> Cell:
    """The inverse of ``cell_to_dict``: the same id, axes and config (hash included)."""
    return Cell(str(d["id"]), RunConfig.from_dict(d["config"]), tuple((str(k), v) for k, v in d["axes"]))


Cell.to_dict = cell_to_dict
Cell.from_dict = staticmethod(cell_from_dict)
