"""LM head + cross-entropy without the full logits tensor: a chunked custom autograd Function.

Reference: ``lm_head(h)`` then ``F.cross_entropy(logits.float(), y, ignore_index=-100)``. Same
equation, exact gradients (no filtering or sampling of the vocabulary):

    loss = sum_{i valid} (logsumexp_v z_iv - z_i,y_i) / n,   z = h W^T (fp32),   n = #valid (mean) or 1 (sum)
    dL/dz = (softmax(z) - onehot(y)) / n,   dL/dh = dL/dz W,   dL/dW = (dL/dz)^T h

Rows are processed in chunks: each chunk's logits are computed (fp32 accumulation), reduced to its
loss, and turned at once into its share of dL/dh and dL/dW; the chunk's logits are then freed.
Gradients are computed in forward (as Liger-Kernel's fused linear cross-entropy does) and scaled by
the incoming gradient in backward, so no (tokens x vocab) tensor ever exists: peak extra memory is
one chunk of fp32 logits plus dL/dh (input dtype) and an fp32 dL/dW.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 2**27  # fp32 logits per chunk: 512 MiB


def n_chunks(rows: int, vocab: int) -> int:
    return max(1, math.ceil(rows * vocab / CHUNK_ELEMENTS))


class LinearCrossEntropyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, targets, ignore_index: int, mean: bool, with_grad: bool):
        rows, dt = h.shape[0], torch.promote_types(h.dtype, torch.float32)  # fp64 stays fp64
        valid = targets != ignore_index
        count = valid.sum().clamp(min=1).to(dt) if mean else torch.ones((), dtype=dt, device=h.device)
        loss = torch.zeros((), dtype=dt, device=h.device)
        grad_h = torch.empty_like(h) if with_grad else None
        grad_w = torch.zeros(weight.shape, dtype=dt, device=h.device) if with_grad else None
        step = math.ceil(rows / n_chunks(rows, weight.shape[0]))
        for start in range(0, rows, step):
            hc, yc, vc = h[start:start + step], targets[start:start + step], valid[start:start + step]
            logits = (hc @ weight.T).to(dt)
            safe_y = torch.where(vc, yc, torch.zeros_like(yc)).long()
            lse = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, safe_y[:, None])[:, 0]
            loss = loss + torch.where(vc, lse - picked, torch.zeros_like(lse)).sum()
            if with_grad:
                dz = torch.softmax(logits, dim=-1)
                dz.scatter_add_(1, safe_y[:, None], -torch.ones_like(dz[:, :1]))
                dz = (dz * (vc[:, None] / count)).to(h.dtype)
                grad_h[start:start + step] = dz @ weight
                grad_w += (dz.T @ hc).to(dt)
        ctx.save_for_backward(grad_h, grad_w.to(weight.dtype) if with_grad else None)
        return loss / count

    @staticmethod
    def backward(ctx, grad):
        grad_h, grad_w = ctx.saved_tensors
        if grad_h is None:
            raise RuntimeError("linear_cross_entropy was called with with_grad=False")
        return grad_h * grad.to(grad_h.dtype), grad_w * grad.to(grad_w.dtype), None, None, None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         ignore_index: int = -100, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of ``h @ weight.T`` against ``targets`` (h: (..., d), targets: (...)), in fp32 (fp64 for fp64)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    with_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    return LinearCrossEntropyFunction.apply(h.flatten(0, -2), weight, targets.flatten(), ignore_index,
                                            reduction == "mean", with_grad)


def reference_linear_cross_entropy(h, weight, targets, ignore_index: int = -100, reduction: str = "mean"):
    """The unfused reference: full logits, cast to fp32, F.cross_entropy."""
    logits = F.linear(h, weight)
    dt = torch.promote_types(logits.dtype, torch.float32)
    return F.cross_entropy(logits.flatten(0, -2).to(dt), targets.flatten().long(), ignore_index=ignore_index,
                           reduction=reduction)
