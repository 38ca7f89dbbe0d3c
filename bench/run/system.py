"""Facts about this machine and process: peak memory, the CPU's measured matmul peak, provenance."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import resource
import subprocess
import time
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


@functools.cache
def cpu_matmul_peak(n: int = 1024, seconds: float = 1.0) -> float:
    """Best fp32 matmul FLOP/s of this CPU at the current thread count: the MFU basis on CPU."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def available_flops(device: torch.device, precision: str) -> tuple[float | None, str]:
    """Peak FLOP/s to divide by for MFU, and where it comes from."""
    if device.type == "cuda":
        from lightning.fabric.utilities.throughput import get_available_flops

        fp8 = precision.startswith("fp8")  # Lightning's table has no fp8 entry: the bf16 peak, said so
        dtype = torch.bfloat16 if "bf16" in precision or fp8 else torch.float16 if "16" in precision else torch.float32
        peak = get_available_flops(device, dtype)
        note = " (fp8 cell: the fp8 tensor-core peak is about 2x this)" if fp8 else ""
        return peak, f"{torch.cuda.get_device_name(device)} {dtype} datasheet peak (Lightning){note}"
    return cpu_matmul_peak(), f"measured fp32 matmul peak of this CPU ({torch.get_num_threads()} threads)"


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
