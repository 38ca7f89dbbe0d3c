"""PowLU fused with the gate product, fp32 inside, recompute in backward (custom autograd Function).

Reference: ``models.activations.powlu``. Same equation, with s = sigmoid(z):

    y = f(g) * u,   f(z) = z^(a(z)) s(z) for z > 0 (a(z) = m / (sqrt z + 1)),   silu(z) = z s(z) for z <= 0

Only g and u are saved, in their input dtype (the reference keeps ~5 fp32 tensors of g's size).
Backward recomputes f in fp32 and its derivative

    z > 0:  f'(z) = z^a (a' ln z + a / z) s + z^a s (1 - s),   a' = -m / (2 sqrt z (sqrt z + 1)^2)
    z <= 0: f'(z) = s (1 + z (1 - s))

so dL/dg = dL/dy u f'(g) and dL/du = dL/dy f(g).
"""

from __future__ import annotations

import torch

from ..activations import powlu as powlu_reference  # noqa: F401  (the formula this reproduces)


def _gate_and_slope(zf, m: float):
    pos = zf > 0
    zp = torch.where(pos, zf, torch.ones_like(zf))  # keep log/sqrt away from z <= 0
    root = torch.sqrt(zp)
    a = m / (root + 1.0)
    log = torch.log(zp)
    power = torch.exp(a * log)
    s = torch.sigmoid(zf)
    gate = torch.where(pos, power, zf) * s
    da = -m / (2.0 * root * (root + 1.0) ** 2)
    slope_pos = power * (da * log + a / zp) * s + power * s * (1 - s)
    slope_neg = s * (1 + zf * (1 - s))
    return gate, torch.where(pos, slope_pos, slope_neg)


class PowLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, g, u, m: float):
        dt = torch.promote_types(g.dtype, torch.float32)
        zf = g.to(dt)
        pos = zf > 0
        zp = torch.where(pos, zf, torch.ones_like(zf))
        power = torch.exp(m / (torch.sqrt(zp) + 1.0) * torch.log(zp))
        gate = torch.where(pos, power, zf) * torch.sigmoid(zf)
        ctx.save_for_backward(g, u)
        ctx.m = m
        return (gate * u.to(dt)).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        g, u = ctx.saved_tensors
        dt = torch.promote_types(g.dtype, torch.float32)
        gate, slope = _gate_and_slope(g.to(dt), ctx.m)
        gf = grad.to(dt)
        return (gf * u.to(dt) * slope).to(g.dtype), (gf * gate).to(u.dtype), None


def powlu_fused(g, u, m: float = 3.0):
    """``powlu`` through PowLUFunction: same output and gradients, only g and u saved."""
    return PowLUFunction.apply(g, u, float(m))
