"""Fast paths beside the references in ``models.activations``, chosen by ``model.kernels``.

- 'reference': the plain-torch formulas of models/activations.py (autograd stores what it stores);
- 'fused': PolyNorm and PowLU through custom autograd Functions that save only their inputs and
  recompute in backward (polynorm.py, powlu.py); relu2, gelu, swiglu, geglu, polyrelu and swiglu_clip
  through ``torch.compile(fullgraph=True)`` of the very reference function (Inductor fuses the
  elementwise chain and its backward into one kernel each);
- 'triton': as 'fused', but PolyNorm through the Triton kernels of triton_polynorm.py (needs the
  ``gpu`` extra; tested on CPU through Triton's interpreter, not yet timed on a GPU);
- 'auto' (default): 'fused' for tensors on CUDA, 'reference' elsewhere, so CPU numerics stay
  bitwise those of the reference.

Activations without a fast path (relu, silu, mish, ...) are single torch ops already.
"""

from __future__ import annotations

import functools

import torch

from .. import activations as A
from .linear_ce import linear_cross_entropy, reference_linear_cross_entropy
from .polynorm import polynorm_fused
from .powlu import powlu_fused

KERNELS = ("auto", "reference", "fused", "triton")


def use_fast(kernels: str, x: torch.Tensor) -> bool:
    return kernels in ("fused", "triton") or (kernels == "auto" and x.is_cuda)


def _polynorm_triton(act, x):
    from .triton_polynorm import polynorm_triton  # imported late: TRITON_INTERPRET is read at import

    if x.dtype == torch.float64:  # the kernel accumulates in fp32; fp64 stays exact through the Function
        return polynorm_fused(x, act.weight, act.bias, act.form)
    return polynorm_triton(x, act.weight, act.bias, act.form)


@functools.cache
def _compiled(fn):
    return torch.compile(fn, fullgraph=True)


def compiled(fn):
    """fn through torch.compile, one compiled copy per reference function (shared by every layer: one
    compilation); inside an already-compiled model, fn itself, which the outer graph fuses (a nested
    torch.compile call would break the graph)."""
    if torch.compiler.is_compiling():
        return fn
    return _compiled(fn)


# activation class -> fast forward(act, *inputs)
FAST = {
    A.PolyNorm: lambda act, x: polynorm_fused(x, act.weight, act.bias, act.form),
    A.PowLU: lambda act, g, u: powlu_fused(g, u, act.m),
    A.ReLU2: lambda act, x: compiled(A.relu2)(x),
    A.GELU: lambda act, x: compiled(A.F.gelu)(x, approximate=act.approximate),
    A.SwiGLU: lambda act, g, u: compiled(A.swiglu)(g, u),
    A.GeGLU: lambda act, g, u: compiled(A.geglu)(g, u, act.approximate),
    A.PolyReLU: lambda act, x: compiled(A.polyrelu)(x, act.weight, act.bias),
    A.SwiGLUClip: lambda act, g, u: compiled(A.swiglu_clip)(g, u, act.limit, act.variant),
}


# kernels='triton': these instead of FAST's entry; the rest as 'fused'
TRITON = {A.PolyNorm: _polynorm_triton}


def fast_path(act, kernels: str = "fused"):
    """The fast forward for this activation module, or None when it has none."""
    if kernels == "triton" and type(act) in TRITON:
        return TRITON[type(act)]
    return FAST.get(type(act))


__all__ = ["KERNELS", "FAST", "fast_path", "use_fast", "compiled", "linear_cross_entropy",
           "reference_linear_cross_entropy", "polynorm_fused", "powlu_fused"]
