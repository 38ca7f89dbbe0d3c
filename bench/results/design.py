"""The sequential design a results folder was trained under: ``sequential.json`` beside its records.

A folder trained "until decided" (`--until-decided --max-seeds K`) was looked at after every round,
so its comparisons must be read with the design's sequential tests (stats/sequential.py), never with
the one-look t-tests: those are invalid after stopping early. The design is fixed before the first
round and written once, atomically; every table reads it from here (``read_design``). A later run
that asks for another K is refused: choosing K after a look spends error rate the design never
counted."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write_json
from ..errors import ConfigError
from .stats.sequential import Design
from .stats.verdicts import ALPHA, DEFAULT_MARGIN

FILE = "sequential.json"


@dataclass(frozen=True)
class Recorded:
    """A folder's design and the alpha and margin its rounds stopped on."""

    design: Design
    alpha: float = ALPHA
    margin: float = DEFAULT_MARGIN
    started: str = ""


def read_design(folder: Path) -> Recorded | None:
    """The folder's design, or None when it was not trained sequentially; a damaged file is one line."""
    path = Path(folder) / FILE
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        design = Design(int(raw["max_seeds"]), str(raw.get("spending", "obf")))
        return Recorded(design, float(raw.get("alpha", ALPHA)), float(raw.get("margin", DEFAULT_MARGIN)),
                        str(raw.get("started", "")))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is not a sequential design ({e}); it records how the folder was trained: "
                          "restore it rather than delete it") from None


def record_design(folder: Path, wanted: Recorded, write: bool = True) -> Recorded:
    """Write ``wanted`` as the folder's design (``write`` False: check only), or keep the one already
    there when it is the same; a different one is refused in one line."""
    have = read_design(folder)
    if have is not None:
        if (have.design, have.alpha, have.margin) != (wanted.design, wanted.alpha, wanted.margin):
            raise ConfigError(
                f"{Path(folder)} was trained until decided with --max-seeds {have.design.max_seeds}, alpha "
                f"{have.alpha:g} and --margin {have.margin:g} (spending {have.design.spending}); its design is fixed "
                f"once looked at: rerun with those, or name another folder (--name)")
        return have
    if not write:
        return wanted
    atomic_write_json(Path(folder) / FILE, {"max_seeds": wanted.design.max_seeds, "spending": wanted.design.spending,
                                            "alpha": wanted.alpha, "margin": wanted.margin,
                                            "started": wanted.started})
    return wanted
