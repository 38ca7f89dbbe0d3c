"""PolyNorm as one row-wise pass with recompute in backward (custom autograd Function).

Reference: ``models.activations.polynorm`` (plain torch, checkpointed). Same equation:

    y = sum_{p=1..r} c_p x^p + b,   c_p = w[r-p] / sqrt(k * sum_j x_j^(2p) + eps),   k = 1/n ('rms') or 1 ('l2')

Forward reads x once, accumulates the r row sums of x^2, x^4, x^6 in fp32 (fp64 stays fp64) and
writes y once; only x (input dtype), w and b are saved. Backward recomputes the row sums and uses,
with g = dL/dy and A_p = sum_j g_j x_j^p (one more row reduction):

    dL/dx_j   = g_j * sum_p p c_p x_j^(p-1)  -  sum_p (p k c_p A_p / (m_p + eps)) x_j^(2p-1)
    dL/dw[r-p] = sum_rows A_p / sqrt(m_p + eps),      dL/db = sum g

where m_p = k sum_j x_j^(2p). Eager, each line is a few elementwise kernels; under torch.compile
(the model's compiled step) Inductor fuses forward and backward into row-wise passes.
"""

from __future__ import annotations

import torch

from ..activations import polynorm as polynorm_reference  # noqa: F401  (the formula this reproduces)


def _row_stats(xf, order: int, rms: bool, eps: float):
    """(m_p + eps) for p = 1..order, each (..., 1), m_p = mean or sum of x^(2p)."""
    x2 = xf * xf
    even, out = x2, []
    for p in range(1, order + 1):
        s = even.mean(-1, keepdim=True) if rms else even.sum(-1, keepdim=True)
        out.append(s + eps)
        if p < order:
            even = even * x2
    return out


class PolyNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, rms: bool, eps: float):
        dt = torch.promote_types(x.dtype, torch.float32)
        xf = x.to(dt)
        order = weight.shape[0]
        den = _row_stats(xf, order, rms, eps)
        coeffs = [weight[order - p].to(dt) * torch.rsqrt(den[p - 1]) for p in range(1, order + 1)]
        acc = coeffs[-1]
        for c in reversed(coeffs[:-1]):  # Horner: x (c_1 + x (c_2 + x c_3))
            acc = c + xf * acc
        ctx.save_for_backward(x, weight, bias)
        ctx.rms, ctx.eps = rms, eps
        return (xf * acc + bias.to(dt)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias = ctx.saved_tensors
        dt = torch.promote_types(x.dtype, torch.float32)
        xf, gf = x.to(dt), grad.to(dt)
        order, n = weight.shape[0], x.shape[-1]
        k = 1.0 / n if ctx.rms else 1.0
        den = _row_stats(xf, order, ctx.rms, ctx.eps)
        grad_x = torch.zeros_like(xf)
        grad_w = []
        power = torch.ones_like(xf)  # x^(p-1)
        for p in range(1, order + 1):
            inv = torch.rsqrt(den[p - 1])
            c = weight[order - p].to(dt) * inv
            xp = power * xf  # x^p
            a = (gf * xp).sum(-1, keepdim=True)  # A_p
            grad_w.append((a * inv).sum())
            grad_x = grad_x + gf * (p * c) * power - (p * k) * (c * a / den[p - 1]) * (xp * power)  # x^(2p-1)
            power = xp
        grad_w = torch.stack(grad_w[::-1]).to(weight.dtype)  # weight[0] belongs to the highest power
        grad_b = gf.sum().reshape(bias.shape).to(bias.dtype)
        return grad_x.to(x.dtype), grad_w, grad_b, None, None


def polynorm_fused(x, weight, bias, form: str = "rms", eps: float = 1e-6):
    """``polynorm`` through PolyNormFunction: same output and gradients, only x saved."""
    return PolyNormFunction.apply(x, weight, bias, form == "rms", eps)
