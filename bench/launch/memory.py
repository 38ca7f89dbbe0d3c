"""Peak memory of one training cell per device, from the cell's own saved tensors.

``estimate`` builds the cell's real model under PyTorch's FakeTensorMode (tensors with shapes and
dtypes but no data, on the CPU) and runs two training steps, each forward, backward and optimizer
step (the second one with the Adam states in place and, when train.grad_accum > 1, a second
micro-batch on top of the first one's gradients), under torch.distributed._tools.mem_tracker's
MemTracker. It counts every tensor alive at each operator (rounded up to 512 bytes, as the CUDA
caching allocator), and the peak is split into weights (parameters, buffers), gradients, optimizer
states and activations (saved for backward, plus the backward's temporaries). So the activation's
own saved tensors count: PowLU's, PolyNorm's and SwiGLU's peaks differ as measured. The cell's
precision is applied as Lightning would (bf16-true: the model in bf16; *-mixed and fp8: CPU
autocast to bf16), its LM-head loss as the module computes it (train.fused_loss: chunked on the GPU
and when asked), its attention through the CPU's fused kernel (FlashAttention-like: no
probabilities kept; ``flash=False`` forces the math path). An MoE runs a balanced dispatch (T k rows
through one expert, models/moe.py), since fake tensors have no routing. Activations use the
reference formulas (model.kernels 'fused' recomputes some on the GPU, so the estimate is an upper
bound there), and torch.compile's fusions are not modelled (the compiled swiglu record is 15% below
the eager one). Under FSDP's full sharding weights, gradients and optimizer states are divided by
the shards. ``overhead`` = 1 GiB covers the CUDA context and allocator slack. A cell "fits" a GPU
when peak <= 0.95 x its memory. One trace takes about 1 s (micro) to 5 s (gpas-71m) on one core
and is cached by shape: seeds and settings that do not change a tensor share it. When a model
cannot be traced (an operator without a fake kernel) the closed formula ``formula_estimate``
stands in, and says so in ``basis``.

Checked in tests/unit/launch/test_memory.py: against the CPU process's own allocation at micro and small
scale (ratios 0.996 to 1.005, SwiGLU and PowLU), and against the committed H100 records at gpas-71m
(results/gpu/gpu-71m/: bf16-true, micro-batch 128, eager reference code): estimate / measured 1.04
SwiGLU, 1.05 PolyNorm, 1.02 PowLU, 1.04 SwiGLU + GPAS (the estimate with its 1 GiB overhead).

``formula_estimate``, the closed form used before (blind to the activation): per device, for P
parameters, micro-batch b, sequence s, width d, layers L, key/value width kv, FFN width h,
vocabulary V, heads n_h, and N shards,

    weights     = P * w / N                   w = 4 bytes (32-true, *-mixed: fp32 master weights),
    gradients   = P * w / N                       2 bytes (bf16-true, 16-true)
    optimizer   = 2 * P * w / N               Adam/AdamW: exp_avg and exp_avg_sq in the weights' dtype
    activations = b * s * L * (6 d + 2 kv + f h) * a      saved for backward, no recomputation
                + b * n_h * s^2 * L * a       attention probabilities; only without a fused kernel
                + b * s * V * (a + 4)         logits, and their fp32 copy for the loss

where a is the activation element size (4 bytes at 32-true, 2 otherwise), f = 3 for a gated FFN
and 2 for a pointwise one, times the experts a token passes through (MoE: top-k + shared).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from models import ACTIVATIONS, check_choice, count_params

GiB = 1024**3
OVERHEAD = 1 * GiB
HEADROOM = 0.95

# Memory as the vendor sells it (GB = 1e9 bytes, as in the product names).
GPUS: dict[str, int] = {
    "t4-16gb": 16 * 10**9, "v100-16gb": 16 * 10**9, "v100-32gb": 32 * 10**9,
    "a10g-24gb": 24 * 10**9, "l4-24gb": 24 * 10**9, "rtx4090-24gb": 24 * 10**9,
    "a100-40gb": 40 * 10**9, "a100-80gb": 80 * 10**9, "l40s-48gb": 48 * 10**9,
    "h100-80gb": 80 * 10**9, "h200-141gb": 141 * 10**9, "mi300x-192gb": 192 * 10**9,
    "b200-192gb": 192 * 10**9,
}


def gpu_memory(name: str) -> int:
    check_choice("GPU", name, GPUS)
    return GPUS[name]


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    overhead: int = OVERHEAD
    basis: str = "formula"

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.overhead

    def fits(self, gpu_bytes: int) -> bool:
        return self.total <= HEADROOM * gpu_bytes


def shards(train) -> int:
    """Devices the weights are split over: all of a node's devices (x nodes) under FSDP, else 1."""
    if "fsdp" not in str(train.strategy).lower():
        return 1
    devices = str(train.devices)
    n = int(devices) if devices.isdigit() else len([d for d in devices.split(",") if d.strip()]) or 1
    return max(1, n * train.num_nodes)


def formula_estimate(cfg, flash: bool = True) -> MemoryEstimate:
    """The closed formula (module docstring) for one resolved RunConfig; blind to the activation."""
    m, t = cfg.model, cfg.train
    params = count_params(m)
    half = t.precision in ("bf16-true", "16-true")
    w = 2 if half else 4
    a = 4 if t.precision.startswith("32") or t.precision == "64-true" else 2
    n = shards(t)
    b, s, d, L, V = t.batch_size, m.block_size, m.d_model, m.n_layers, m.vocab_size
    kv = (m.n_kv_heads or m.n_heads) * (d // m.n_heads)
    f = 3 if ACTIVATIONS[m.activation].gated else 2
    experts = m.moe_top_k + m.moe_shared_experts if getattr(m, "ffn", "dense") == "moe" else 1
    acts = b * s * L * (6 * d + 2 * kv + experts * f * params.intermediate_size) * a
    if not flash:
        acts += b * m.n_heads * s * s * L * a
    acts += b * s * V * (a + 4)
    return MemoryEstimate(weights=params.total * w // n, gradients=params.total * w // n,
                          optimizer=2 * params.total * w // n, activations=acts)


def fused_loss_on(cfg, gpu: bool) -> bool:
    """train.fused_loss as LMModule.fused_loss decides it, 'auto' meaning on for a GPU run."""
    t = cfg.train
    return t.fused_loss == "true" or (t.fused_loss == "auto" and gpu and "fsdp" not in str(t.strategy))


def shape_key(cfg, flash: bool) -> str:
    """What the trace depends on: the model, the micro-batch and its precision, the optimizer."""
    t = cfg.train
    return repr((dataclasses.asdict(cfg.model), t.batch_size, t.grad_accum, t.precision, t.optimizer,
                 fused_loss_on(cfg, flash), flash))


_TRACES: dict[str, tuple[dict[str, int] | None, str]] = {}  # shape key -> (peak by kind, basis)


def traced(cfg, flash: bool) -> tuple[dict[str, int] | None, str]:
    """(peak bytes by kind, basis) of cfg's training step, traced once per shape key."""
    key = shape_key(cfg, flash)
    if key not in _TRACES:
        from .memory_trace import traced_peak

        try:
            _TRACES[key] = traced_peak(cfg, flash=flash, fused=fused_loss_on(cfg, flash)), "traced"
        except Exception as e:  # an operator without a fake kernel (a plugin's): the formula stands in
            _TRACES[key] = None, f"formula (trace failed: {type(e).__name__}: {e})"[:200]
    return _TRACES[key]


def estimate(cfg, flash: bool = True) -> MemoryEstimate:
    """Peak memory per device of one resolved RunConfig from one traced training step (module
    docstring); ``flash``: a fused attention kernel, and the GPU's defaults (fused loss on 'auto')."""
    peak, basis = traced(cfg, flash)
    if peak is None:
        return dataclasses.replace(formula_estimate(cfg, flash), basis=basis)
    n = shards(cfg.train)
    return MemoryEstimate(weights=peak["weights"] // n, gradients=peak["gradients"] // n,
                          optimizer=peak["optimizer"] // n, activations=peak["activations"], basis=basis)


def fmt_bytes(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB / 10 else f"{n / 2**20:.1f} MiB"


MAX_TRACES = 16  # distinct shapes a plan traces; beyond, the closed formula stands in


def too_big(cells, gpu: str | None) -> list[tuple[str, MemoryEstimate]]:
    """(cell id, estimate) of every cell that will not fit ``gpu`` (none when no GPU is named)."""
    if gpu is None:
        return []
    cap = gpu_memory(gpu)
    out = []
    trace = len({shape_key(c.config, True) for c in cells}) <= MAX_TRACES  # seconds per traced shape
    for cell in cells:
        est = estimate(cell.config) if trace else formula_estimate(cell.config)
        if not est.fits(cap):
            out.append((cell.id, est))
    return out


def recipe_for_scale(scale: str) -> str | None:
    """The recipe a scale preset is meant for: the recipe of its name (polycom-moe), else the longest
    recipe whose name and a '-' start it (gpas-71m -> gpas); None for the CPU scales."""
    from bench.run.config.presets import recipes

    names = [r for r in recipes() if r != "cpu"]
    if scale in names:
        return scale
    prefixes = [r for r in names if scale.startswith(r + "-")]
    return max(prefixes, key=len) if prefixes else None


def suggest_recipe(cells, gpu: str | None) -> str | None:
    """One hint line when a GPU is named and a cell at a paper's scale still has the default fp32 CPU
    recipe: the recipe that scale is meant for (None otherwise)."""
    if gpu is None:
        return None
    for cell in cells:
        cfg = cell.config
        meant = recipe_for_scale(cfg.scale)
        if meant and cfg.recipe == "cpu" and cfg.train.precision == "32-true":
            return (f"hint: {cfg.scale} is meant for `--recipe {meant}`; the default recipe 'cpu' trains in fp32 "
                    f"(weights, gradients and Adam states at 4 bytes each, and fp32 activations)")
    return None


def warn_too_big(cells, gpu: str | None, console) -> None:
    """One warning line per cell that will not fit (the run or submission goes on: it is an estimate),
    and the recipe hint when the default fp32 recipe meets a GPU scale."""
    cells = list(cells)
    hint = suggest_recipe(cells, gpu)
    if hint:
        console.print(f"[yellow]{hint}[/]", highlight=False)
    for cid, est in too_big(cells, gpu):
        console.print(f"[yellow]warning:[/] {cid} needs about {fmt_bytes(est.total)} per device, more than "
                      f"{HEADROOM:.0%} of a {gpu} ({fmt_bytes(GPUS[gpu])}); see `bench plan --gpu {gpu}`",
                      highlight=False)
