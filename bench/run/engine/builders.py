"""The optimizer and the LR schedule of a cell, built in one place: the LightningModule, `bench check`,
`bench overhead` and `bench cost` all train with exactly these."""

from __future__ import annotations

import math

import torch
from torch import nn

OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}  # adam: weight decay is L2


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: norm gains, biases, polynomial coefficients and GPAS gates are vectors
    or scalars, and the references exclude them all from weight decay."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cosine_with_warmup(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear warmup to 1, then cosine down to min_ratio at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, train, device: torch.device | None = None) -> torch.optim.Optimizer:
    """``train.optimizer`` over the model's decay / no-decay groups. fused: one multi-tensor kernel
    per step on CUDA (the same update)."""
    fused = {"fused": True} if device is not None and device.type == "cuda" else {}
    return OPTIMIZERS[train.optimizer](param_groups(model, train.weight_decay), lr=train.lr,
                                       betas=tuple(train.betas), eps=train.eps, **fused)


def build_schedule(optimizer: torch.optim.Optimizer, train) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``train.warmup_steps``, cosine to ``min_lr_ratio`` at ``train.max_steps``."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, train.warmup_steps, train.max_steps, train.min_lr_ratio))
