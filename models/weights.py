"""Trained weights on disk: model.safetensors + config.json (the TransformerConfig) in one folder.

    from models import load_weights
    model = load_weights("results/default/<cell id>/weights")   # a models.Transformer, eval mode

Plain torch + safetensors: no Lightning, no harness. Tied embeddings are stored once
(safetensors.torch.save_model drops the duplicate and load_model restores the tie).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from .config import TransformerConfig
from .transformer import Transformer

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_weights(model: Transformer, folder: str | Path, extra: dict | None = None) -> Path:
    """Write ``model``'s weights (as float32) and its config to ``folder``; ``extra`` is stored in
    config.json under "harness" (the run config, tokenizer...). Returns the folder."""
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "_orig_mod", model)
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    save_model(_float_copy(model, state), str(folder / WEIGHTS_FILE))
    meta = {"format": "llm-arch-bench/weights-v1", "model": dataclasses.asdict(model.cfg)}
    if extra:
        meta["harness"] = extra
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2, default=str))
    return folder


def _float_copy(model: Transformer, state: dict) -> Transformer:
    """A fresh float32 CPU Transformer holding ``state`` (training-time wrappers such as fp8
    layers are not carried over: only the plain weights)."""
    cfg = TransformerConfig(**dataclasses.asdict(model.cfg))
    with torch.device("meta"):
        copy = Transformer(cfg)
    copy.to_empty(device="cpu")
    if cfg.tie_embeddings:
        copy.lm_head.weight = copy.embed.weight
    copy.load_state_dict(state, strict=True)
    return copy


def read_config(folder: str | Path) -> dict:
    """config.json of a weights folder."""
    return json.loads((Path(folder) / CONFIG_FILE).read_text())


def load_weights(folder: str | Path, device: str | torch.device = "cpu") -> Transformer:
    """The Transformer saved in ``folder`` (float32, eval mode)."""
    from safetensors.torch import load_model

    folder = Path(folder)
    if not (folder / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"no {WEIGHTS_FILE} in {folder}")
    fields = {f.name for f in dataclasses.fields(TransformerConfig)}
    cfg = TransformerConfig(**{k: _tuple(v) for k, v in read_config(folder)["model"].items() if k in fields})
    with torch.device("meta"):
        model = Transformer(cfg)
    model.to_empty(device="cpu")
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    load_model(model, str(folder / WEIGHTS_FILE), strict=True)
    return model.to(device).eval()


def _tuple(v):
    return tuple(v) if isinstance(v, list) else v
