"""GPAS, gradient-preserving activation scaling (GPAS paper, eq. 2 and 11).

    G(x) = x - act(a) * sg(x)

Forward scales x by (1 - act(a)); with the stop-gradient sg the Jacobian dG/dx is exactly I.
One learnable scalar ``a`` per layer, initialised to 0 (G is then the identity), shared by the
attention and FFN sub-layers of that layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GATE_ACTS = {
    "silu": "silu(a) (default)",
    "identity": "a",
    "tanh": "tanh(a)",
    "relu": "relu(a)",
    "leaky_relu": "leaky_relu(a, 0.01)",
    "silu_beta": "a * sigmoid(beta a), scaled SiLU (paper's ablation uses beta = 8)",
}

POSITIONS = {
    "after_sublayer": "G(x + f(N(x)))  (default)",
    "before_sublayer": "G(x) + f(N(G(x)))",
    "after_norm": "x + f(G(N(x)))",
    "after_fn": "x + G(f(N(x)))",
}


def gate_activation(a: torch.Tensor, act: str, beta: float = 8.0) -> torch.Tensor:
    if act == "silu":
        return F.silu(a)
    if act == "identity":
        return a
    if act == "tanh":
        return torch.tanh(a)
    if act == "relu":
        return F.relu(a)
    if act == "leaky_relu":
        return F.leaky_relu(a, 0.01)
    if act == "silu_beta":
        return a * torch.sigmoid(beta * a)
    raise ValueError(f"unknown GPAS gate activation {act!r}; valid: {', '.join(GATE_ACTS)}")


class GPAS(nn.Module):
    """x - act(gate) * sg(x): one scalar gate; stop_grad=False gives the paper's eq. 12 control."""

    def __init__(self, act: str = "silu", beta: float = 8.0, stop_grad: bool = True,
                 learnable: bool = True, init: float = 0.0):
        super().__init__()
        gate_activation(torch.zeros(()), act, beta)  # fail early on a bad name
        self.act, self.beta, self.stop_grad, self.init = act, beta, stop_grad, init
        self.gate = nn.Parameter(torch.empty(()), requires_grad=learnable)
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.constant_(self.gate, self.init)

    def scale(self) -> torch.Tensor:
        """The forward multiplier 1 - act(gate)."""
        return 1 - gate_activation(self.gate.detach(), self.act, self.beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = gate_activation(self.gate, self.act, self.beta).to(x.dtype)
        return x - s * (x.detach() if self.stop_grad else x)
