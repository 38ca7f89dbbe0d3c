"""Facts about this machine and process: peak memory, the CPU's measured matmul peak, provenance."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import re
import resource
import subprocess
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: "5" resets the process's peak RSS (VmHWM), so each cell gets its own peak
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, what was measured)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda max allocated"
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024, "peak RSS of the process (VmHWM)"
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "peak RSS of the process (ru_maxrss)"


def cpu_matmul_peak(n: int = 1024, seconds: float = 1.0) -> float:
    """Best fp32 matmul FLOP/s of this CPU at the current thread count: the MFU basis on CPU. Measured
    once per process and thread count (a second of matmuls)."""
    return _cpu_matmul_peak(n, seconds, torch.get_num_threads())


@functools.cache
def _cpu_matmul_peak(n: int, seconds: float, threads: int) -> float:
    return measure_matmul_peak(n, seconds)


def measure_matmul_peak(n: int, seconds: float) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


# Dense (no 2:4 sparsity) tensor-core peaks per GPU, TFLOP/s; fp32 is the non-tensor-core rate.
# NVIDIA datasheets quote sparse figures for the tensor cores: these are those halved.
#   A100: nvidia-a100-datasheet-us-nvidia-1758950-r4 (SXM and PCIe share the tensor-core rates)
#   H100 SXM / PCIe / NVL: nvidia-tensor-core-gpu-datasheet (H100 NVL: the 94 GB per-GPU figures)
#   H200 SXM / NVL: hpc-datasheet-sc23-h200-datasheet-3002446
#   B200: HGX B200 (1000 W) per-GPU column of the Blackwell datasheet
#   L40S: l40s-datasheet-28413; L4: l4-gpu-datasheet; L40: ada-gpu-architecture-whitepaper-v2.1
# Ampere has no fp8 tensor cores: None there (an fp8 cell cannot run on it; its bf16 peak is used).
PEAK_TFLOPS = {
    "A100": {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5, "fp8": None},
    "H100 SXM": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9, "fp8": 1978.9},
    "H100 PCIe": {"bf16": 756.5, "fp16": 756.5, "tf32": 378.0, "fp32": 51.2, "fp8": 1513.0},
    "H100 NVL": {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0, "fp8": 1670.5},
    "H200 SXM": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9, "fp8": 1978.9},
    "H200 NVL": {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0, "fp8": 1670.5},
    "B200": {"bf16": 2250.0, "fp16": 2250.0, "tf32": 1100.0, "fp32": 75.0, "fp8": 4500.0},
    "L40S": {"bf16": 362.05, "fp16": 362.05, "tf32": 183.0, "fp32": 91.6, "fp8": 733.0},
    "L40": {"bf16": 181.0, "fp16": 181.0, "tf32": 90.5, "fp32": 90.5, "fp8": 362.0},
    "L4": {"bf16": 121.0, "fp16": 121.0, "tf32": 60.0, "fp32": 30.3, "fp8": 242.0},
}

# (pattern over the lower-cased CUDA device name, table key): the first match wins, so the
# specific names come before the families. torch.cuda.get_device_name gives e.g. "NVIDIA H200",
# "NVIDIA H100 80GB HBM3" (SXM), "NVIDIA H100 PCIe", "NVIDIA A100-SXM4-80GB", "NVIDIA L40S".
DEVICE_PATTERNS = (
    (r"gh200", "H100 SXM"),  # Grace Hopper: the H100 SXM's tensor cores
    (r"h200.*nvl", "H200 NVL"), (r"h200", "H200 SXM"),
    (r"h100.*nvl", "H100 NVL"), (r"h100.*pcie", "H100 PCIe"), (r"h100", "H100 SXM"),
    (r"a100", "A100"), (r"b200", "B200"),
    (r"l40s", "L40S"), (r"l40\b", "L40"), (r"\bl4\b", "L4"),
)


def device_kind(name: str) -> str | None:
    """Our table's key for a CUDA device name, or None when the table does not know it."""
    low = name.lower()
    return next((key for pattern, key in DEVICE_PATTERNS if re.search(pattern, low)), None)


def precision_dtype(precision: str) -> str:
    """The tensor-core format a Lightning precision's matmuls run in: bf16, fp16, fp8, tf32 or fp32."""
    if precision.startswith("fp8"):
        return "fp8"
    if "bf16" in precision:
        return "bf16"
    if "16" in precision:
        return "fp16"
    return "tf32" if torch.get_float32_matmul_precision() != "highest" else "fp32"


TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp8": torch.bfloat16, "tf32": torch.float32,
                "fp32": torch.float32}


def table_peak(name: str, dtype: str) -> tuple[float | None, str]:
    """(FLOP/s, basis) from our dense table; (None, why) when it has no entry."""
    kind = device_kind(name)
    if kind is None:
        return None, f"{name!r} is not in bench's peak table"
    peaks = PEAK_TFLOPS[kind]
    if peaks.get(dtype) is None and dtype == "fp8":  # no fp8 tensor cores: the bf16 rate it really runs at
        dtype, why = "bf16", "; no fp8 tensor cores"
    else:
        why = ""
    return peaks[dtype] * 1e12, f"{kind} {dtype} dense datasheet peak ({peaks[dtype]:g} TFLOP/s, bench's table{why})"


def lightning_peak(device: torch.device, dtype: str) -> float | None:
    """Lightning's datasheet value (some of its entries are 2:4-sparse figures): the fallback only."""
    from lightning.fabric.utilities.throughput import get_available_flops

    if dtype == "fp8":
        return None  # Lightning's table has no fp8 entry
    try:
        with warnings.catch_warnings():  # "FLOPs not found": the caller measures instead, and says so
            warnings.simplefilter("ignore")
            return get_available_flops(device, TORCH_DTYPES[dtype])
    except Exception:  # noqa: BLE001 - a fallback: a failure here means "measure instead"
        return None


def cuda_matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 8192, reps: int = 20) -> float:
    """Best measured n x n matmul FLOP/s on this GPU in ``dtype`` (CUDA events, after a warm-up)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return 2 * n**3 / best


@functools.cache
def _measured_cuda_peak(index: int, dtype: str) -> float:
    return cuda_matmul_peak(torch.device("cuda", index), TORCH_DTYPES[dtype])


def available_flops(device: torch.device, precision: str, name: str | None = None) -> tuple[float | None, str]:
    """Peak FLOP/s to divide by for MFU, and where it comes from (the record's mfu_basis): bench's
    dense datasheet table, else Lightning's value, else a measured matmul peak labelled as such."""
    if device.type != "cuda":
        return cpu_matmul_peak(), f"measured fp32 matmul peak of this CPU ({torch.get_num_threads()} threads)"
    name = name or torch.cuda.get_device_name(device)
    dtype = precision_dtype(precision)
    peak, basis = table_peak(name, dtype)
    if peak is not None:
        return peak, basis
    peak = lightning_peak(device, dtype)
    if peak:
        return float(peak), (f"{name} {dtype} datasheet peak ({peak / 1e12:g} TFLOP/s, Lightning's table: "
                             "may be a 2:4-sparse figure)")
    measured = "bf16" if dtype == "fp8" else dtype
    peak = _measured_cuda_peak(device.index or 0, measured)
    return peak, (f"measured {measured} matmul peak of this GPU ({peak / 1e12:.0f} TFLOP/s; "
                  f"{name} is in no datasheet table)")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def git_state() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("rev-parse", "HEAD")
    if len(commit) != 40:  # not a git checkout (e.g. a copied tree)
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


PACKAGES = ("torch", "lightning", "torchmetrics", "litdata", "tokenizers", "numpy", "rich")


def environment(device: torch.device) -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"packages": versions, "python": platform.python_version(), "device": device_name(device),
            "platform": platform.platform(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.version.cuda, "git": git_state()}
