"""The MFU basis: bench's dense peak table by device name, Lightning's value only as a fallback, a
measured matmul peak for a device neither knows, and never an empty MFU."""

from __future__ import annotations

import pytest
import torch

from bench.run.engine import system

CUDA = torch.device("cuda")

# names as torch.cuda.get_device_name reports them -> (table key, dense bf16 TFLOP/s)
NAMES = {
    "NVIDIA H200": ("H200 SXM", 989.4),
    "NVIDIA H200 NVL": ("H200 NVL", 835.5),
    "NVIDIA H100 80GB HBM3": ("H100 SXM", 989.4),
    "NVIDIA H100": ("H100 SXM", 989.4),
    "NVIDIA H100 PCIe": ("H100 PCIe", 756.5),
    "NVIDIA H100 NVL": ("H100 NVL", 835.5),
    "NVIDIA GH200 480GB": ("H100 SXM", 989.4),
    "NVIDIA A100-SXM4-80GB": ("A100", 312.0),
    "NVIDIA A100-SXM4-40GB": ("A100", 312.0),
    "NVIDIA A100 80GB PCIe": ("A100", 312.0),
    "NVIDIA A100-PCIE-40GB": ("A100", 312.0),
    "NVIDIA B200": ("B200", 2250.0),
    "NVIDIA L40S": ("L40S", 362.05),
    "NVIDIA L40": ("L40", 181.0),
    "NVIDIA L4": ("L4", 121.0),
}


@pytest.mark.parametrize("name", NAMES)
def test_device_names_map_to_dense_bf16_peaks(name):
    key, tflops = NAMES[name]
    assert system.device_kind(name) == key
    peak, basis = system.available_flops(CUDA, "bf16-mixed", name=name)
    assert peak == pytest.approx(tflops * 1e12)
    assert key in basis and "dense" in basis and "bench's table" in basis


def test_h200_is_not_lightnings_sparse_figure():
    """Lightning returns 2.0e15 (the 2:4-sparse figure) for an H200 SXM, when it recognises it at all."""
    peak, _ = system.available_flops(CUDA, "bf16-true", name="NVIDIA H200")
    assert peak == pytest.approx(989.4e12)


@pytest.mark.parametrize("precision,dtype", [("bf16-mixed", "bf16"), ("bf16-true", "bf16"), ("16-mixed", "fp16"),
                                             ("fp8", "fp8"), ("fp8-rowwise", "fp8"), ("32-true", None)])
def test_every_table_entry_covers_each_precision(precision, dtype):
    for key, peaks in system.PEAK_TFLOPS.items():
        assert set(peaks) == {"bf16", "fp16", "tf32", "fp32", "fp8"}, key
    if dtype is None:  # fp32: tf32 unless the matmul precision is 'highest'
        old = torch.get_float32_matmul_precision()
        try:
            torch.set_float32_matmul_precision("highest")
            assert system.precision_dtype(precision) == "fp32"
            torch.set_float32_matmul_precision("high")
            assert system.precision_dtype(precision) == "tf32"
        finally:
            torch.set_float32_matmul_precision(old)
    else:
        assert system.precision_dtype(precision) == dtype


def test_fp8_uses_the_fp8_peak_and_ampere_falls_back_to_bf16():
    peak, basis = system.available_flops(CUDA, "fp8-tensorwise", name="NVIDIA H100 80GB HBM3")
    assert peak == pytest.approx(1978.9e12) and "fp8 dense" in basis
    peak, basis = system.available_flops(CUDA, "fp8", name="NVIDIA A100-SXM4-80GB")
    assert peak == pytest.approx(312e12) and "no fp8 tensor cores" in basis


def test_unknown_device_falls_back_to_lightning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA A10G")
    monkeypatch.setattr(system, "_measured_cuda_peak", lambda *a: pytest.fail("Lightning knows the A10G"))
    peak, basis = system.available_flops(CUDA, "bf16-mixed")
    assert peak == pytest.approx(125e12)
    assert "Lightning" in basis


def test_device_nobody_knows_gets_a_measured_peak(monkeypatch):
    """MFU is never silently empty: a measured matmul peak, said so in the basis."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA Imaginary X1")
    calls = []
    monkeypatch.setattr(system, "_measured_cuda_peak", lambda index, dtype: calls.append(dtype) or 5e14)
    for precision in ("bf16-mixed", "fp8"):
        peak, basis = system.available_flops(CUDA, precision)
        assert peak == 5e14
        assert basis.startswith("measured bf16 matmul peak") and "Imaginary X1" in basis
    assert calls == ["bf16", "bf16"]


def test_cpu_basis_is_measured():
    peak, basis = system.available_flops(torch.device("cpu"), "32-true")
    assert peak > 0 and basis.startswith("measured fp32 matmul peak")


def test_the_cpu_peak_is_measured_once_per_thread_count(monkeypatch):
    """Cached per thread count: a process that changes its threads (a forked child that drops to one)
    gets the peak of the threads it runs with, not the one measured first."""
    measured = []
    monkeypatch.setattr(system, "measure_matmul_peak", lambda n, s: measured.append(torch.get_num_threads()) or 1.0)
    system._cpu_matmul_peak.cache_clear()
    threads = torch.get_num_threads()
    try:
        for n in (1, 1, 2, 2, 1):
            torch.set_num_threads(n)
            system.cpu_matmul_peak()
    finally:
        torch.set_num_threads(threads)
        system._cpu_matmul_peak.cache_clear()
    assert measured == [1, 2]
