"""End-of-training analyses on the final weights: effective rank of every FFN matrix (PolyCom C.2),
the layer x layer cosine similarity of hidden states (PolyCom Figure 7), and layer importance (GPAS
Figure 7): the token-weighted loss with one block skipped, minus the loss with none skipped."""

from __future__ import annotations

import contextlib

import torch

from models.moe import ffn_modules

from .forward import evaluating, probe_forward, skipped, token_loss
from .measures import effective_rank, layer_cosine


def ffn_ranks(model) -> dict[str, float]:
    """'layer.matrix' -> effective rank; an MoE: the mean over its expert FFNs (shared included)."""
    return {f"{i}.{name}": sum(per) / len(per)
            for i, block in enumerate(model.blocks, start=1) for name in ("gate", "up", "down")
            if (per := [effective_rank(getattr(f, name).weight) for f in ffn_modules(block.ffn) if hasattr(f, name)])}


def layer_importance(model, batches, context=contextlib.nullcontext) -> tuple[float, list[float]]:
    """(loss with every block, [loss with block l skipped - that loss, per block])."""
    base = token_loss(model, batches, context)
    importance = []
    for block in model.blocks:
        with skipped(block):
            importance.append(token_loss(model, batches, context) - base)
    return base, importance


def final_analyses(model, x: torch.Tensor, batches: list[tuple[torch.Tensor, torch.Tensor]],
                   context=contextlib.nullcontext) -> dict:
    """Effective ranks, layer cosine similarity (on the probe batch x) and layer importance (on
    ``batches``) of ``model`` as it is now, in eval mode."""
    with evaluating(model):
        ranks = ffn_ranks(model)
        cosine = layer_cosine(probe_forward(model, x, context)["hidden"]).tolist()
        base, importance = layer_importance(model, batches, context)
    return {"effective_rank": ranks, "layer_cosine": cosine, "layer_importance": importance,
            "base_loss": base, "importance_tokens": int(sum((y != -100).sum() for _, y in batches))}
