"""FFN activations: every formula of the papers in one file.

Two kinds, told apart by the class attribute ``gated``:
- pointwise, ``forward(x)``: the FFN is ``down(act(up x))``;
- gated, ``forward(g, u)``: the FFN is ``down(act(gate x, up x))``.

``ACTIVATIONS`` maps each name to its class; the first line of a class docstring is the
one-line description ``bench list`` prints. Formulas follow the PolyCom and PowLU papers
(docs/papers.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .registry import ACTIVATIONS, describe  # noqa: F401  (describe: `bench list`'s one-liner)


class Pointwise(nn.Module):
    """Base for ``down(act(up x))`` activations without parameters."""

    gated = False
    fn = staticmethod(F.relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _pointwise(name: str, fn, doc: str) -> type[Pointwise]:
    return type(name, (Pointwise,), {"fn": staticmethod(fn), "__doc__": doc})


ReLU = _pointwise("ReLU", F.relu, "relu(x)")
def relu2(x):
    """relu(x)^2 (Primer)."""
    return F.relu(x).square()


def swiglu(g, u):
    """silu(g) * u."""
    return F.silu(g) * u


def geglu(g, u, approximate: str = "none"):
    """gelu(g) * u."""
    return F.gelu(g, approximate=approximate) * u


ReLU2 = _pointwise("ReLU2", relu2, "relu(x)^2, squared ReLU (Primer)")
SiLU = _pointwise("SiLU", F.silu, "silu(x) = x * sigmoid(x)")
ReLU6 = _pointwise("ReLU6", F.relu6, "min(max(x, 0), 6)  [PolyCom Table 4]")
Mish = _pointwise("Mish", F.mish, "x * tanh(softplus(x))  [PolyCom Table 4]")
ELU = _pointwise("ELU", F.elu, "elu(x), alpha 1  [PolyCom Table 4]")
CELU = _pointwise("CELU", F.celu, "celu(x), alpha 1  [PolyCom Table 4]")
Softplus = _pointwise("Softplus", F.softplus, "log(1 + exp(x))  [PolyCom Table 4]")
Tanh = _pointwise("Tanh", torch.tanh, "tanh(x)  [PolyCom Table 4]")
Sigmoid = _pointwise("Sigmoid", torch.sigmoid, "sigmoid(x)  [PolyCom Table 4]")


class GELU(Pointwise):
    """gelu(x), exact erf form; approximate='tanh' for the tanh approximation"""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, approximate=self.approximate)


class LeakyReLU(Pointwise):
    """max(x, 0) + slope * min(x, 0), slope 0.01  [PolyCom Table 4]"""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)


class RReLU(Pointwise):
    """max(x, 0) + a * min(x, 0), a ~ U(1/8, 1/3) per element in training, (1/8 + 1/3) / 2 in eval  [PolyCom Table 4]

    Randomized leaky ReLU (Xu et al. 2015), torch's default bounds: a fresh slope for every element
    of every training forward, the fixed mean slope 11/48 in eval mode (validation, probes).
    """

    def __init__(self, lower: float = 1 / 8, upper: float = 1 / 3):
        super().__init__()
        self.lower, self.upper = lower, upper

    def forward(self, x):
        return F.rrelu(x, self.lower, self.upper, training=self.training)


class PReLU(Pointwise):
    """max(x, 0) + a * min(x, 0), one learnable a per layer, init 0.25  [PolyCom Table 4]"""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.constant_(self.weight, 0.25)

    def forward(self, x):
        return F.prelu(x, self.weight.to(x.dtype))


class PolyReLU(Pointwise):
    """PolyCom type I: w0 relu(x)^r + ... + w_{r-1} relu(x) + b; order r in 2..4 (default 3)

    Per-layer scalars shared by all channels; weights init 1/r, bias 0 (PolyCom section 2).
    Computed in the input dtype, as the reference does.
    """

    def __init__(self, order: int = 3):
        super().__init__()
        if order not in (2, 3, 4):
            raise ValueError(f"polyrelu order must be 2, 3 or 4, got {order!r}")
        self.order = order
        self.weight = nn.Parameter(torch.empty(order))
        self.bias = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.constant_(self.weight, 1.0 / self.order)
        nn.init.zeros_(self.bias)

    def forward(self, x):
        return polyrelu(x, self.weight, self.bias)


def polyrelu(x, weight, bias):
    """sum_i weight[i] relu(x)^(r - i) + bias, r = len(weight), in x's dtype (PolyCom type I)."""
    order = weight.shape[0]
    r = F.relu(x)
    out = bias.to(x.dtype)
    for i in range(order):  # weight[0] multiplies the highest power
        out = out + weight[i].to(x.dtype) * r ** (order - i)
    return out


def polynorm(x, weight, bias, form: str = "rms", eps: float = 1e-6):
    """sum_p c_p x^p + bias with c_p = weight[r-p] / sqrt(mean(x^2p) + eps), in fp32, returned in x's dtype.

    N(x^p) = x^p * rsqrt(mean(x^2p) + eps), and the rsqrt is one scalar per row, so the polynomial
    is evaluated in Horner form on per-row coefficients: x (c_1 + x (c_2 + x c_3)) + b.
    """
    reduce = torch.mean if form == "rms" else torch.sum
    dt = torch.promote_types(x.dtype, torch.float32)  # upcast bf16/fp16; never downcast fp64
    xf = x.to(dt)
    order = weight.shape[0]
    x2 = xf * xf
    even = x2  # x^(2p)
    coeffs = []  # c_p for p = 1..order; weight[0] belongs to the highest power
    for p in range(1, order + 1):
        coeffs.append(weight[order - p].to(dt) * torch.rsqrt(reduce(even, -1, keepdim=True) + eps))
        if p < order:
            even = even * x2
    acc = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = c + xf * acc
    return (xf * acc + bias.to(dt)).to(x.dtype)


class PolyNorm(Pointwise):
    """PolyCom type II: w0 N(x^3) + w1 N(x^2) + w2 N(x) + b, N = RMS normalization (fp32)

    form='rms' (reference code, default) or 'l2' (the paper's text, x^i / ||x^i||_2).
    recompute=True (default) keeps only x for backward and recomputes the powers, as the
    reference's checkpointing does: x^2, x^3 and their norms are never stored.
    """

    def __init__(self, order: int = 3, form: str = "rms", recompute: bool = True):
        super().__init__()
        if order not in (2, 3, 4):
            raise ValueError(f"polynorm order must be 2, 3 or 4, got {order!r}")
        if form not in ("rms", "l2"):
            raise ValueError(f"polynorm form must be 'rms' or 'l2', got {form!r}")
        self.order, self.form, self.recompute = order, form, recompute
        self.weight = nn.Parameter(torch.empty(order))
        self.bias = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.constant_(self.weight, 1.0 / self.order)
        nn.init.zeros_(self.bias)

    def forward(self, x):
        if self.recompute and torch.is_grad_enabled():
            return checkpoint(polynorm, x, self.weight, self.bias, self.form, use_reentrant=False)
        return polynorm(x, self.weight, self.bias, self.form)


def powlu_gate(z: torch.Tensor, m: float = 3.0) -> torch.Tensor:
    """PowLU's g(z): z^(m / (sqrt(z) + 1)) * sigmoid(z) for z > 0, silu(z) for z <= 0 (fp32)."""
    zf = z.to(torch.promote_types(z.dtype, torch.float32))  # upcast bf16/fp16; never downcast fp64
    pos = zf > 0
    zp = torch.where(pos, zf, torch.ones_like(zf))  # keep log/sqrt away from z <= 0
    power = torch.exp(m / (torch.sqrt(zp) + 1.0) * torch.log(zp))
    return torch.where(pos, power, zf) * torch.sigmoid(zf)


class Gated(nn.Module):
    """Base for ``down(act(gate x) * up x)`` activations."""

    gated = True


class SwiGLU(Gated):
    """silu(gate x) * up x  (LLaMA's MLP; the reference every scale is sized for)"""

    def forward(self, g, u):
        return swiglu(g, u)


class GeGLU(Gated):
    """gelu(gate x) * up x; approximate='tanh' for the tanh GELU"""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, g, u):
        return geglu(g, u, self.approximate)


class ReGLU(Gated):
    """relu(gate x) * up x"""

    def forward(self, g, u):
        return F.relu(g) * u


CLIP_VARIANTS = {
    "input": "silu(min(g, L)) * clamp(u, -L, L)",
    "output": "min(silu(g), L) * clamp(u, -L, L)  (Ling/Step models)",
    "gptoss": "g * sigmoid(1.702 g) * (u + 1), g = min(g, L), u = clamp(u, -L, L)  (gpt-oss)",
}


class SwiGLUClip(Gated):
    """SwiGLU with clamps, limit L = 7.0; variant 'input' (default), 'output' or 'gptoss'"""

    def __init__(self, limit: float = 7.0, variant: str = "input"):
        super().__init__()
        if variant not in CLIP_VARIANTS:
            raise ValueError(f"swiglu_clip variant must be one of {sorted(CLIP_VARIANTS)}, got {variant!r}")
        if not limit > 0:
            raise ValueError(f"swiglu_clip limit must be > 0, got {limit!r}")
        self.limit, self.variant = float(limit), variant

    def forward(self, g, u):
        return swiglu_clip(g, u, self.limit, self.variant)


def swiglu_clip(g, u, limit: float, variant: str = "input"):
    """The CLIP_VARIANTS formulas with clamp limit L."""
    L = limit
    u = u.clamp(-L, L)
    if variant == "input":
        return F.silu(g.clamp(max=L)) * u
    if variant == "output":
        return F.silu(g).clamp(max=L) * u
    g = g.clamp(max=L)
    return g * torch.sigmoid(1.702 * g) * (u + 1)


class PowLU(Gated):
    """g(gate x) * up x, g(z) = z^(m/(sqrt z + 1)) sigmoid(z) for z > 0 else silu(z); m = 3 (fp32)"""

    def __init__(self, m: float = 3.0):
        super().__init__()
        if not 0 < m < 10:
            raise ValueError(f"powlu m must lie in (0, 10), got {m!r}")
        self.m = float(m)

    def forward(self, g, u):
        return powlu(g, u, self.m)


def powlu(g, u, m: float = 3.0):
    """powlu_gate(g) * u in fp32 (fp64 stays fp64), returned in u's dtype."""
    gate = powlu_gate(g, m)
    return (gate * u.to(gate.dtype)).to(u.dtype)


BUILTIN = {
    "relu": ReLU,
    "relu2": ReLU2,
    "gelu": GELU,
    "silu": SiLU,
    "swiglu": SwiGLU,
    "geglu": GeGLU,
    "reglu": ReGLU,
    "swiglu_clip": SwiGLUClip,
    "polyrelu": PolyReLU,
    "polynorm": PolyNorm,
    "powlu": PowLU,
    "relu6": ReLU6,
    "leaky_relu": LeakyReLU,
    "prelu": PReLU,
    "rrelu": RReLU,
    "mish": Mish,
    "elu": ELU,
    "celu": CELU,
    "softplus": Softplus,
    "tanh": Tanh,
    "sigmoid": Sigmoid,
}
for _name, _cls in BUILTIN.items():
    ACTIVATIONS.register(_name, _cls)
