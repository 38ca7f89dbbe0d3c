"""The feed-forward block: bias-free linears ``up``, ``down`` and, when gated, ``gate``."""

from __future__ import annotations

import functools
import inspect

import torch
from torch import nn

from .activations import ACTIVATIONS
from .kernels import KERNELS, fast_path, use_fast
from .names import check_choice


def build_activation(activation: str, **options) -> nn.Module:
    cls = ACTIVATIONS[check_choice("activation", activation, ACTIVATIONS)]
    accepted = {k for k in inspect.signature(cls).parameters}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(
            f"activation {activation!r} takes no option(s) {unknown}; "
            f"it takes {sorted(accepted) or 'none'}"
        )
    return cls(**options)


class FFN(nn.Module):
    """down(act(up x)), or down(act(gate x, up x)) for a gated activation; ``kernels`` picks the
    activation's reference formula or its fast path (models/kernels)."""

    def __init__(self, d_model: int, hidden: int, act: nn.Module, kernels: str = "reference"):
        super().__init__()
        self.act = act
        self.gated = act.gated
        self.kernels = check_choice("kernels", kernels, KERNELS)
        self.fast = fast_path(act, kernels)
        if self.gated:
            self.gate = nn.Linear(d_model, hidden, bias=False)
        self.up = nn.Linear(d_model, hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.act
        if self.fast is not None and use_fast(self.kernels, x):
            act = functools.partial(self.fast, self.act)
        if self.gated:
            return self.down(act(self.gate(x), self.up(x)))
        return self.down(act(self.up(x)))


def build_ffn(activation: str, d_model: int, hidden: int, kernels: str = "reference", **options) -> FFN:
    """An FFN for ``activation`` (a name from ``ACTIVATIONS``) of width d_model -> hidden -> d_model.

    ``options`` go to the activation (``limit``/``variant`` for swiglu_clip, ``order`` for
    polyrelu/polynorm, ``form`` for polynorm, ``m`` for powlu, ``approximate`` for gelu/geglu);
    ``kernels`` is 'reference', 'fused', 'triton' or 'auto' (fused on CUDA), see models/kernels.
    """
    return FFN(d_model, hidden, build_activation(activation, **options), kernels)
