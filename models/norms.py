"""Normalization layers. Both compute in fp32 and return the input dtype."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import NORMS


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight  (LLaMA; eps 1e-6)"""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # bf16/fp16 up, fp64 kept
        y = xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.to(y.dtype)).to(x.dtype)


class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * weight + bias"""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))
        self.bias = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = torch.promote_types(x.dtype, torch.float32)
        y = F.layer_norm(x.to(dt), x.shape[-1:], self.weight.to(dt), self.bias.to(dt), self.eps)
        return y.to(x.dtype)


NORMS.register("rmsnorm", RMSNorm)
NORMS.register("layernorm", LayerNorm)
