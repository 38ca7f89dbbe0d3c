"""A worked plugin: a gated squared ReLU activation, a ReZero-on-Pre-LN scheme and a probe of its alphas.

Load it without touching the harness (docs/plugins.md):

    bench --plugin examples/plugin/my_ext.py plan examples/plugin/matrix.yaml
    bench run examples/plugin/matrix.yaml            # the matrix lists this file under plugins:
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from bench import register_probe
from models import PreBlock, register_activation, register_scheme


@register_activation("relu2_glu")
class ReLU2GLU(nn.Module):
    """relu(gate x)^2 * up x: a gated squared ReLU (Primer's relu^2 as a GLU gate)"""

    gated = True  # forward(g, u); the FFN gets three matrices and is sized like SwiGLU

    def forward(self, g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return F.relu(g).square() * u


@register_scheme("rezero_pre", doc="ReZero on Pre-LN: x + alpha * f(N(x)), one learnable alpha per sub-layer, init 0")
class ReZeroPreBlock(PreBlock):
    """x + alpha_i * f(N(x)) for sub-layer i (0 attention, 1 FFN); alpha_i starts at 0 (ReZero)."""

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        # a 1-dim parameter: param_groups never decays it (only ndim >= 2 is decayed); no 'gpas' in its name,
        # so train.gpas_grad_clip leaves it alone
        self.rezero_alpha = nn.Parameter(torch.empty(2))
        self.reset_parameters()

    def post_norm(self, h, i):  # PreBlock's hook on f(N(x)) before the residual add
        return self.rezero_alpha[i].to(h.dtype) * h

    def reset_parameters(self):
        super().reset_parameters()  # the base scheme's init (scaled_out_proj)
        nn.init.zeros_(self.rezero_alpha)


@register_probe("rezero_alpha")
class ReZeroAlpha(L.Callback):
    """Each layer's ReZero alphas (attention, FFN) at the end of training: how far each sub-layer opened."""

    def __init__(self):
        self.alpha: list[list[float]] = []

    @classmethod
    def from_config(cls, cfg, dm):
        return cls() if cfg.model.scheme == "rezero_pre" else None  # None: not this cell

    def on_train_end(self, trainer, pl_module):
        self.alpha = [b.rezero_alpha.detach().float().tolist() for b in pl_module.model.blocks]

    def result(self) -> dict:  # JSON-able: stored in the record under extra_probes["rezero_alpha"]
        return {"alpha": self.alpha}
