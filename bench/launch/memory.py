"""Peak GPU memory of one training cell, estimated from its config (no model is built).

Per device, for P parameters (models.count_params), micro-batch b, sequence s, width d, layers L,
key/value width kv = n_kv_heads * head_dim, FFN width h, vocabulary V, heads n_h, and N the number
of shards (N = devices for FSDP's full sharding, 1 otherwise):

    weights     = P * w / N                   w = 4 bytes (32-true, *-mixed: fp32 master weights),
    gradients   = P * w / N                       2 bytes (bf16-true, 16-true)
    optimizer   = 2 * P * w / N               Adam/AdamW: exp_avg and exp_avg_sq in the weights' dtype
    activations = b * s * L * (6 d + 2 kv + f h) * a      saved for backward, no recomputation
                + b * n_h * s^2 * L * a       attention probabilities; only without a fused kernel
                                              (flash=False: CPU's math path); FlashAttention keeps none
                + b * s * V * (a + 4)         logits, and their fp32 copy for the loss
    peak        = weights + gradients + optimizer + activations + overhead

where a is the activation element size (4 bytes at 32-true, 2 otherwise), f = 3 for a gated FFN
(gate and up outputs, and the activation's output) and 2 for a pointwise one (up output, activation
output) times the experts a token passes through (MoE: top-k + shared; every expert's weights
count in P), and the 6 d + 2 kv per layer and token are: the attention norm's input and output (2 d),
q, k and v (d + 2 kv), the attention output (d), the FFN norm's input and output (2 d).
``overhead`` = 1 GiB covers the CUDA context and allocator slack. A cell "fits" a GPU when
peak <= 0.95 x its memory. It is an estimate, meant to catch a cell that is several times too big
before it is queued; the measured figure is the record's ``peak_memory_bytes``.
"""

from __future__ import annotations

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


def estimate(cfg, flash: bool = True) -> MemoryEstimate:
    """The docstring's formula for one resolved RunConfig (cfg.model.vocab_size as resolved)."""
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


def fmt_bytes(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB / 10 else f"{n / 2**20:.1f} MiB"


def too_big(cells, gpu: str | None) -> list[tuple[str, MemoryEstimate]]:
    """(cell id, estimate) of every cell that will not fit ``gpu`` (none when no GPU is named)."""
    if gpu is None:
        return []
    cap = gpu_memory(gpu)
    out = []
    for cell in cells:
        est = estimate(cell.config)
        if not est.fits(cap):
            out.append((cell.id, est))
    return out


def warn_too_big(cells, gpu: str | None, console) -> None:
    """One warning line per cell that will not fit (the run or submission goes on: it is an estimate)."""
    for cid, est in too_big(cells, gpu):
        console.print(f"[yellow]warning:[/] {cid} needs about {fmt_bytes(est.total)} per device, more than "
                      f"{HEADROOM:.0%} of a {gpu} ({fmt_bytes(GPUS[gpu])}); see `bench plan --gpu {gpu}`",
                      highlight=False)
