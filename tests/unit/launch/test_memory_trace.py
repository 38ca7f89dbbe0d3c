"""bench/launch/memory_trace.py: the peak-only tracker against PyTorch's stock MemTracker."""

import pytest

from bench.launch.memory_trace import traced_peak
from bench.run.config.presets import resolve


@pytest.mark.parametrize("settings", [
    {"scale": "micro", "activation": "swiglu", "norm": "pre"},
    {"scale": "nano", "activation": "powlu", "norm": "mixln", "train.precision": "bf16-mixed"},
    {"scale": "nano-moe", "activation": "polynorm", "norm": "pre+gpas", "train.grad_accum": 2},
])
def test_the_peak_only_tracker_finds_the_stock_tracker_s_peak(settings):
    cfg = resolve(settings)
    fast, stock = traced_peak(cfg), traced_peak(cfg, per_module=True)
    assert fast == stock
    # the peak comes in the second step's forward: Adam states held, gradients already set to None
    assert fast["weights"] > 0 and fast["optimizer"] > fast["weights"] and fast["activations"] > 0, fast
