"""What 'auto' means, once: a run's root device is a CUDA GPU when its accelerator says gpu/cuda, or says
auto and CUDA is available; every 'auto' | 'true' | 'false' setting (compile, fused loss) follows it."""

from __future__ import annotations


def cuda_accelerator(accelerator: str) -> bool:
    """Whether a train.accelerator value puts the run on a CUDA GPU on this machine."""
    import torch  # not at import: `bench --help` and matrix expansion stay torch-free

    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def on_cuda(cfg) -> bool:
    """Whether this run's root device is a CUDA GPU."""
    return cuda_accelerator(cfg.train.accelerator)


def root_device(cfg):
    """The run's root device: ``cuda`` or ``cpu``."""
    import torch

    return torch.device("cuda" if on_cuda(cfg) else "cpu")


def flag(value: str, cfg) -> bool:
    """An 'auto' | 'true' | 'false' setting as a bool: 'auto' is on for CUDA, off elsewhere."""
    return value == "true" or (value == "auto" and on_cuda(cfg))
