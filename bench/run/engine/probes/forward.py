"""The probes' own forwards: no-grad, eval-mode passes over a fixed batch, and hooks on the FFN hidden
activation (the input of ``down``) that see a dense FFN and every expert of an MoE alike."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from models.moe import ffn_modules

from ..module import lm_loss
from .measures import PooledMoments, kurtosis


@contextlib.contextmanager
def skipped(block: torch.nn.Module):
    """The block returns its input: the layer is removed from the residual stream."""
    block.forward = lambda x, *args, **kwargs: x  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        del block.forward


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """The model in eval mode for a probe's forward, its own mode restored after (even on an error)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def base_model(pl_module) -> torch.nn.Module:
    """The Transformer (LMModule.model), unwrapped from torch.compile's OptimizedModule if any."""
    model = getattr(pl_module, "model", pl_module)
    return getattr(model, "_orig_mod", model)


def hidden_hooks(ffn_slot: torch.nn.Module, fn: Callable[[torch.Tensor], None]) -> list:
    """Forward pre-hooks passing the hidden activation (act(up x) or act(gate x, up x), the input of
    ``down``) to ``fn``: once for a dense FFN, once per expert (routed and shared) for an MoE, whose
    eval forward runs every expert as its own module."""
    return [f.down.register_forward_pre_hook(lambda module, args: fn(args[0].detach()))
            for f in ffn_modules(ffn_slot)]


class Direct:
    """max |a| and kurtosis of the one tensor a dense FFN's hook sees (PooledMoments' interface)."""

    def __init__(self):
        self.stats = torch.full((2,), float("nan"))

    def update(self, a: torch.Tensor) -> None:
        self.stats = torch.stack([a.abs().max().float(), kurtosis(a)])

    def result(self) -> torch.Tensor:
        return self.stats


def probe_forward(model, x: torch.Tensor, context=contextlib.nullcontext) -> dict[str, torch.Tensor]:
    """One no-grad forward of x: hidden states and per-layer FFN hidden-activation statistics
    (max |a|, kurtosis; an MoE's experts pooled per layer). Calls ``model.forward`` (not
    ``model(...)``) so that an in-place compiled model runs eagerly."""
    per_layer = [Direct() if hasattr(block.ffn, "down") else PooledMoments() for block in model.blocks]
    hooks = [h for block, acc in zip(model.blocks, per_layer) for h in hidden_hooks(block.ffn, acc.update)]
    try:
        with torch.no_grad(), context():
            logits, hidden = model.forward(x, return_hidden=True)
    finally:
        for h in hooks:
            h.remove()
    ffn_stats = [acc.result().to(x.device) for acc in per_layer]
    return {"logits": logits, "hidden": hidden, "ffn": torch.stack(ffn_stats)}  # ffn: (L, 2)


def token_loss(model, batches, context=contextlib.nullcontext) -> float:
    """Token-weighted mean cross-entropy over (x, y) batches (padding -100 excluded)."""
    total, n = 0.0, 0
    with torch.no_grad():
        for x, y in batches:
            with context():
                logits = model.forward(x)
            total = total + lm_loss(logits, y, reduction="sum")
            n = n + (y != -100).sum()
    return (total / n).item()


PROBE_ROWS = 16  # rows of the probe batch every sampling probe forwards


def probe_batch(dm):
    """The probes' fixed batch: the first in-domain validation batch (an in-memory, unshuffled split,
    so every probe built from it sees the same rows)."""
    return next(iter(first_loader(dm.val_dataloader())))


def first_loader(loaders):
    """The in-domain loader: val_dataloader returns a list (val, ood) or a single loader."""
    return loaders[0] if isinstance(loaders, (list, tuple)) else loaders
