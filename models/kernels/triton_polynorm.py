"""PolyNorm in Triton: one program per row, forward and backward, x read once per pass.

Reference: ``models.activations.polynorm``; the same equations as ``polynorm.py`` (this file's
sibling, whose docstring derives the backward):

    y = sum_p c_p x^p + b,  c_p = w[r-p] / sqrt(m_p + eps),  m_p = k sum_j x_j^(2p)  (k = 1/n 'rms', 1 'l2')
    dL/dx_j = g_j sum_p p c_p x_j^(p-1) - sum_p (p k c_p A_p / (m_p + eps)) x_j^(2p-1),  A_p = sum_j g_j x_j^p

Row sums accumulate in fp32; x and g are read in their dtype, y and dL/dx written in it. The
per-row terms A_p / sqrt(m_p + eps) are written out and summed by torch for dL/dw. Needs the
``triton`` package (the ``gpu`` extra); tests run it on CPU tensors through Triton's interpreter
(TRITON_INTERPRET=1). Rows longer than MAX_BLOCK are refused with one clear error (launch_config).
"""

from __future__ import annotations

import torch

from ..activations import polynorm as polynorm_reference  # noqa: F401  (the formula this reproduces)

try:
    import triton
    import triton.language as tl
except ImportError:  # the gpu extra is not installed
    triton = None

MAX_BLOCK = 16384

if triton is not None:

    @triton.jit
    def _forward(x_ptr, w_ptr, b_ptr, y_ptr, n, eps, RMS: tl.constexpr, ORDER: tl.constexpr, BLOCK: tl.constexpr):
        start = tl.program_id(0).to(tl.int64) * n  # int64: rows x n passes 2^31 at real sizes
        cols = tl.arange(0, BLOCK)
        mask = cols < n
        x = tl.load(x_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
        # row sums of x^2, x^4, ... and the coefficients c_p (the same lines in _backward)
        x2 = x * x
        k = 1.0 / n if RMS else 1.0
        d1 = tl.sum(x2, axis=0) * k + eps
        d2 = tl.sum(x2 * x2, axis=0) * k + eps
        d3 = d2
        d4 = d2
        if ORDER >= 3:
            d3 = tl.sum(x2 * x2 * x2, axis=0) * k + eps
        if ORDER >= 4:
            d4 = tl.sum(x2 * x2 * x2 * x2, axis=0) * k + eps
        c1 = tl.load(w_ptr + ORDER - 1).to(tl.float32) / tl.sqrt(d1)
        c2 = tl.load(w_ptr + ORDER - 2).to(tl.float32) / tl.sqrt(d2)
        c3 = 0.0
        c4 = 0.0
        if ORDER >= 3:
            c3 = tl.load(w_ptr + ORDER - 3).to(tl.float32) / tl.sqrt(d3)
        if ORDER >= 4:
            c4 = tl.load(w_ptr + ORDER - 4).to(tl.float32) / tl.sqrt(d4)
        # (inlined in both kernels: the interpreter cannot call a nested jit function here)
        y = x * (c1 + x * (c2 + x * (c3 + x * c4))) + tl.load(b_ptr).to(tl.float32)
        tl.store(y_ptr + start + cols, y.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _backward(x_ptr, g_ptr, w_ptr, dx_ptr, dw_ptr, n, eps, RMS: tl.constexpr, ORDER: tl.constexpr,
                  BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)  # int64: rows x n passes 2^31 at real sizes
        start = row * n
        cols = tl.arange(0, BLOCK)
        mask = cols < n
        x = tl.load(x_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
        x2 = x * x
        k = 1.0 / n if RMS else 1.0
        d1 = tl.sum(x2, axis=0) * k + eps
        d2 = tl.sum(x2 * x2, axis=0) * k + eps
        d3 = d2
        d4 = d2
        if ORDER >= 3:
            d3 = tl.sum(x2 * x2 * x2, axis=0) * k + eps
        if ORDER >= 4:
            d4 = tl.sum(x2 * x2 * x2 * x2, axis=0) * k + eps
        c1 = tl.load(w_ptr + ORDER - 1).to(tl.float32) / tl.sqrt(d1)
        c2 = tl.load(w_ptr + ORDER - 2).to(tl.float32) / tl.sqrt(d2)
        c3 = 0.0
        c4 = 0.0
        if ORDER >= 3:
            c3 = tl.load(w_ptr + ORDER - 3).to(tl.float32) / tl.sqrt(d3)
        if ORDER >= 4:
            c4 = tl.load(w_ptr + ORDER - 4).to(tl.float32) / tl.sqrt(d4)
        # (inlined in both kernels: the interpreter cannot call a nested jit function here)
        a1 = tl.sum(g * x, axis=0)
        a2 = tl.sum(g * x2, axis=0)
        dx = g * (c1 + 2.0 * c2 * x) - k * (c1 * a1 / d1) * x - 2.0 * k * (c2 * a2 / d2) * (x2 * x)
        tl.store(dw_ptr + row * ORDER + ORDER - 1, a1 / tl.sqrt(d1))
        tl.store(dw_ptr + row * ORDER + ORDER - 2, a2 / tl.sqrt(d2))
        if ORDER >= 3:
            a3 = tl.sum(g * x2 * x, axis=0)
            dx += g * 3.0 * c3 * x2 - 3.0 * k * (c3 * a3 / d3) * (x2 * x2 * x)
            tl.store(dw_ptr + row * ORDER + ORDER - 3, a3 / tl.sqrt(d3))
        if ORDER >= 4:
            a4 = tl.sum(g * x2 * x2, axis=0)
            dx += g * 4.0 * c4 * x2 * x - 4.0 * k * (c4 * a4 / d4) * (x2 * x2 * x2 * x)
            tl.store(dw_ptr + row * ORDER + ORDER - 4, a4 / tl.sqrt(d4))
        tl.store(dx_ptr + start + cols, dx.to(dx_ptr.dtype.element_ty), mask=mask)


def launch_config(n: int) -> tuple[int, int]:
    """(BLOCK, num_warps) for rows of n elements: one power-of-two block holds a whole row, and the
    warps grow with it (4 at 1024, up to 16) so each thread keeps a few dozen fp32 values in registers
    (the backward holds x, g and their products at once)."""
    if n > MAX_BLOCK:
        raise ValueError(f"PolyNorm rows of {n} elements exceed the Triton kernel's MAX_BLOCK ({MAX_BLOCK}); "
                         "use model.kernels=fused for this width")
    block = 1 << max(0, n - 1).bit_length()
    return block, min(16, max(1, block // 256))


class TritonPolyNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, rms: bool, eps: float):
        n = x.shape[-1]
        x2d = x.reshape(-1, n).contiguous()
        y = torch.empty_like(x2d)
        block, warps = launch_config(n)
        _forward[(x2d.shape[0],)](x2d, weight, bias, y, n, eps, RMS=rms, ORDER=weight.shape[0], BLOCK=block,
                                  num_warps=warps)
        ctx.save_for_backward(x, weight, bias)
        ctx.rms, ctx.eps = rms, eps
        return y.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias = ctx.saved_tensors
        n, order = x.shape[-1], weight.shape[0]
        x2d, g2d = x.reshape(-1, n).contiguous(), grad.reshape(-1, n).contiguous()
        dx = torch.empty_like(x2d)
        dw_rows = torch.empty(x2d.shape[0], order, dtype=torch.float32, device=x.device)
        block, warps = launch_config(n)
        _backward[(x2d.shape[0],)](x2d, g2d, weight, dx, dw_rows, n, ctx.eps, RMS=ctx.rms, ORDER=order,
                                   BLOCK=block, num_warps=warps)
        grad_b = g2d.float().sum().reshape(bias.shape).to(bias.dtype)
        return dx.view_as(x), dw_rows.sum(0).to(weight.dtype), grad_b, None, None


def available() -> bool:
    return triton is not None


def polynorm_triton(x, weight, bias, form: str = "rms", eps: float = 1e-6):
    """``polynorm`` through the Triton kernels (CUDA tensors, or any tensor under TRITON_INTERPRET=1)."""
    if triton is None:
        raise RuntimeError("polynorm_triton needs the triton package (pip install -e '.[gpu]')")
    launch_config(x.shape[-1])  # a too-wide row fails here, before any launch
    return TritonPolyNormFunction.apply(x, weight, bias, form == "rms", eps)
