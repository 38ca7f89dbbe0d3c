"""A cell's identity: the hash of every resolved field that can change what is measured.

Cell ids end in this hash and records store it as ``config_hash``, so it must be computed from the
config exactly as it trains: every value decided (the vocabulary size included) before hashing.
The rules below keep ids that were recorded before a field existed unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from models import plugin_parts

# Where caches live and how often to log or probe: they change no trained weight or final metric.
NON_SEMANTIC = ("data.cache_dir", "data.storage_options", "data.max_cache_size", "train.log_every",
                "train.probe_every", "train.nan_check_every", "train.init_val")
# Fields added after cells were first recorded, with the default that changes nothing a cell measures
# on CPU ('auto' picks by device: hashed as the value it stands for there, the old default).
LATER_FIELDS = {"model.kernels": "auto", "train.fused_loss": "auto", "data.eval": {}}
SECTIONS = ("model", "data", "train")


def _shallow(obj) -> dict:
    """A dataclass's fields as a dict without asdict's deep copy: what json.dumps sees is the same."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def identity_dict(cfg) -> dict:
    """The part of a resolved RunConfig that names the cell (the input of config_hash)."""
    d = _shallow(cfg)
    for section in SECTIONS:
        d[section] = _shallow(d[section])
    for path in NON_SEMANTIC:
        section, name = path.split(".")
        d[section].pop(name)
    if d["model"]["ffn"] == "dense":  # MoE options build nothing then: dense hashes (and cell ids) stay as before
        for name in [k for k in d["model"] if k == "ffn" or k.startswith("moe_")]:
            d["model"].pop(name)
    for path, default in LATER_FIELDS.items():  # at their default, newer fields leave old ids as they were
        section, name = path.split(".")
        if d[section].get(name) == default:
            d[section].pop(name)
    if d["train"]["compile"] == "auto":  # like accelerator 'auto', the device's choice: hashed as the old default
        d["train"]["compile"] = False
    parts = plugin_parts(cfg.model)
    if parts:  # changing a plugin's code makes a new cell
        d["plugins"] = {kind: p["sha256"] for kind, p in parts.items()}
    return d


def config_hash(cfg) -> str:
    """10 hex digits of sha256 over identity_dict (sorted keys; tuples as lists, as asdict gives them)."""
    blob = json.dumps(identity_dict(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]
