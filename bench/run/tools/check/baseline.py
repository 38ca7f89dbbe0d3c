"""The baseline file: one line per cell, so a diff shows which cells an update changed. Its
``tolerance`` holds the tolerances it is compared with and how they were derived."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ....atomic import atomic_write
from ....errors import ConfigError
from .cells import FORMAT, all_cells, cell_name, moe_cells, reference_config, settings
from .compare import DEFAULT_TOLERANCES
from .train import CheckData, environment


def read_baseline(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"baseline {path} is not valid JSON (line {e.lineno}): {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read baseline {path}: {e}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("cells"), dict):
        raise ConfigError(f"baseline {path} is not a bench check baseline (format {FORMAT}); "
                          f"make one with `bench check --update --baseline {path}`")
    return data


def default_tolerance() -> dict:
    return {"params": "exact", **{k: {c: {"abs": a, "rel": r} for c, (a, r) in v.items()}
                                  for k, v in DEFAULT_TOLERANCES.items()}}


def write_baseline(path: Path, steps: int, data: CheckData, cells: dict[str, dict],
                   tolerance: dict | None = None) -> None:
    order = {cell_name(*c): i for i, c in enumerate(all_cells() + moe_cells())}
    doc = {
        "format": FORMAT,
        "description": "bench check baseline: nano-scale losses and parameter counts of every activation x "
                       "scheme (+gpas). Regenerate with `bench check --update` after an intended change "
                       "(docs/check.md).",
        "settings": settings(steps),
        "tolerance": tolerance or default_tolerance(),
        "data": {"corpus": "bundled", "tokenizer": "bytes", "fingerprint": data.fingerprint},
        "environment": environment(),
        "config": reference_config(steps),
        "cells": {k: cells[k] for k in sorted(cells, key=lambda k: (order.get(k, len(order)), k))},
    }
    write_doc(path, doc)


def write_doc(path: Path, doc: dict) -> None:
    """A baseline document, one line per cell, written atomically and readable by all."""
    doc = json.loads(json.dumps(doc))  # as JSON holds it (tuples as lists)
    head = json.dumps({k: v for k, v in doc.items() if k != "cells"}, indent=1)
    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc["cells"].items())
    text = head[:-2] + ',\n "cells": {\n' + body + "\n }\n}\n"
    assert json.loads(text) == doc
    umask = os.umask(0)
    os.umask(umask)
    atomic_write(path, text, mode=0o666 & ~umask)  # a committed file, readable as the user's files are
