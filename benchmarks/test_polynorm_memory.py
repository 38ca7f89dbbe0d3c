"""Bytes autograd keeps for backward: PolyNorm(recompute=True) against recompute=False.

The count comes from torch.autograd.graph.saved_tensors_hooks: every tensor packed for
backward during the forward pass, numel * element_size, deduplicated by the data_ptr of its
storage (so a tensor saved by two ops, or two views of one buffer, count once). It includes
the activation's input when an op saves it, and its few learned scalars; it does not include
the output, nor transient peaks inside backward (recompute rebuilds x^2, x^3 there for a moment).
Non-reentrant checkpointing saves its inputs through the same hooks, so the recompute path is
measured completely.

SwiGLU and PowLU (gated: two inputs g and u of the same shape) are listed for reference.
The structural fact that recompute stores strictly less is asserted; timings never are.
"""

from __future__ import annotations

import functools

import pytest
import torch

from models.activations import PolyNorm, PowLU, SwiGLU

SHAPE = (8, 128, 1024)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
CASES = {  # name -> (module factory, number of inputs of SHAPE)
    "polynorm recompute=True": (lambda: PolyNorm(recompute=True), 1),
    "polynorm recompute=False": (lambda: PolyNorm(recompute=False), 1),
    "swiglu": (SwiGLU, 2),
    "powlu": (PowLU, 2),
}
MiB = 2**20


def saved_bytes(fn, *inputs) -> tuple[int, int]:
    """(bytes, tensors) saved for backward while running fn(*inputs), storage-deduplicated."""
    per_storage: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        per_storage[ptr] = max(per_storage.get(ptr, 0), t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*inputs)
    out.float().sum().backward()  # the graph is sound and backward runs
    return sum(per_storage.values()), len(per_storage)


def make_inputs(n: int, dtype: torch.dtype):
    torch.manual_seed(0)
    return [torch.randn(SHAPE, dtype=dtype, requires_grad=True) for _ in range(n)]


@functools.cache
def measure(case: str, dtype_name: str) -> dict:
    factory, n_inputs = CASES[case]
    dtype = DTYPES[dtype_name]
    inputs = make_inputs(n_inputs, dtype)
    nbytes, tensors = saved_bytes(factory(), *inputs)
    input_bytes = sum(x.numel() * x.element_size() for x in inputs)
    return {"saved_bytes": nbytes, "saved_tensors": tensors, "input_bytes": input_bytes,
            "saved_over_input": round(nbytes / input_bytes, 3)}


def memory_rows():
    rows = []
    for dtype_name in DTYPES:
        for case in CASES:
            m = measure(case, dtype_name)
            rows.append([case, dtype_name, m["saved_tensors"], f"{m['saved_bytes']:,}",
                         f"{m['saved_bytes'] / MiB:.2f}", f"{m['saved_over_input']:.2f}x"])
    return rows


def ratio(dtype_name: str) -> float:
    return measure("polynorm recompute=False", dtype_name)["saved_bytes"] / \
        measure("polynorm recompute=True", dtype_name)["saved_bytes"]


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_recompute_saves_strictly_less(dtype_name, report_table):
    with_recompute = measure("polynorm recompute=True", dtype_name)["saved_bytes"]
    without = measure("polynorm recompute=False", dtype_name)["saved_bytes"]
    print(f"polynorm {dtype_name} {SHAPE}: saved {without:,} B without recompute, {with_recompute:,} B "
          f"with; ratio {without / with_recompute:.2f}x")
    report_table(
        f"saved for backward, activation alone, input(s) of shape {SHAPE}",
        ["activation", "dtype", "tensors", "bytes", "MiB", "vs input bytes"], memory_rows(),
        notes=[f"polynorm recompute=False / recompute=True: {ratio(d):.2f}x ({d})" for d in DTYPES],
    )
    assert 0 < with_recompute < without


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("case", list(CASES))
def test_activation_forward_backward(benchmark, timed, case, dtype_name):
    """Time of forward + backward at SHAPE, with the saved bytes in extra_info."""
    benchmark.group = f"activation fwd+bwd: input(s) {SHAPE} {dtype_name} cpu"
    benchmark.extra_info.update(measure(case, dtype_name), activation=case, dtype=dtype_name)
    factory, n_inputs = CASES[case]
    module = factory()
    inputs = make_inputs(n_inputs, DTYPES[dtype_name])
    grad_out = torch.randn(SHAPE, dtype=DTYPES[dtype_name])

    def step():
        for x in inputs:
            x.grad = None
        module.zero_grad(set_to_none=True)
        module(*inputs).backward(grad_out)

    timed(step)
    assert all(x.grad is not None for x in inputs)
