"""Outliers under low precision: per layer, how far activations reach and what a format would lose.

For a tensor a (all its elements, N of them), ``outlier_stats`` gives:
- max_abs   = max |a|: the amax that fp8 tensorwise dynamic scaling divides by (torchao's
              tensorwise recipe computes it afresh every step, so the sampled max_abs over
              training IS the amax history of that tensor);
- kurtosis  = E[(a - mu)^4] / var^2 (3 for a normal; heavy tails -> large);
- e4m3_over = #{|a| > 448} / N: what an unscaled cast to fp8 e4m3 (max finite 448) would saturate;
- e4m3_under = #{0 < |a| * s < 2^-6} / N with s = 448 / max|a|: after tensorwise scaling (the
              largest value mapped to 448), the nonzero values that land below e4m3's smallest
              normal 2^-6 (subnormal, 1-3 significant bits, or flushed to zero below 2^-10). One
              outlier raises max|a| and pushes the rest of the tensor here: the cost of outliers
              under fp8;
- bf16_over = #{|a| > 3.3895e38 or non-finite} / N (beyond bf16's max finite value);
- bf16_under = #{0 < |a| < 2^-126} / N (below bf16's smallest normal; bf16 has fp32's exponent
              range, so both bf16 fractions are ~0 for healthy activations: bf16 loses mantissa
              bits, not range).
Exact zeros are representable in every format and count as neither over nor under.

``OutlierProbe`` samples them at train.probe_every (the same steps as ``Probes``) on the same fixed
probe batch, in one no-grad eval-mode forward under the cell's precision context (so a bf16 cell is
measured in bf16), at three sites per layer: ``ffn_hidden`` (the FFN's hidden activation, the input
of ``down``; for an MoE, every expert's hidden activations of the layer taken together, routed and
shared: the union of what each expert's ``down`` sees), ``ffn_out`` (the FFN's output) and ``resid``
(the residual stream after the block).
Loss spikes are counted by ``Probes`` (measures.find_spikes).
"""

from __future__ import annotations

import contextlib
import time

import lightning as L
import torch

from ...config.probes import register_probe
from ..module import split_batch
from .forward import PROBE_ROWS, base_model, evaluating, hidden_hooks, probe_batch
from .measures import kurtosis

E4M3_MAX = 448.0  # torch.finfo(torch.float8_e4m3fn).max
E4M3_MIN_NORMAL = 2.0 ** -6  # torch.finfo(torch.float8_e4m3fn).tiny
BF16_MAX = torch.finfo(torch.bfloat16).max  # 3.3895e38
BF16_MIN_NORMAL = torch.finfo(torch.bfloat16).tiny  # 2^-126
STATS = ("max_abs", "kurtosis", "e4m3_over", "e4m3_under", "bf16_over", "bf16_under")
SITES = ("ffn_hidden", "ffn_out", "resid")


def e4m3_scale(amax: torch.Tensor) -> torch.Tensor:
    """Tensorwise dynamic scale: the largest magnitude maps to e4m3's max finite value."""
    return E4M3_MAX / amax.clamp(min=1e-12)


def outlier_stats(a: torch.Tensor) -> torch.Tensor:
    """The STATS of every element of ``a`` (see the module docstring), as a float32 vector on a's
    device (no host sync)."""
    x = a.detach().float().flatten()
    mag = x.abs()
    n = x.numel()
    amax = mag.max()
    nonzero = mag > 0
    scaled = mag * e4m3_scale(amax)
    return torch.stack([
        amax,
        kurtosis(x),
        (mag > E4M3_MAX).sum() / n,
        (nonzero & (scaled < E4M3_MIN_NORMAL)).sum() / n,
        ((mag > BF16_MAX) | ~torch.isfinite(x)).sum() / n,
        (nonzero & (mag < BF16_MIN_NORMAL)).sum() / n,
    ]).float()


def site_stats(model, x: torch.Tensor, context=contextlib.nullcontext) -> dict[str, torch.Tensor]:
    """One no-grad forward of x: per site, an (L, len(STATS)) tensor of outlier_stats per layer."""
    found: dict[str, list] = {"ffn_hidden": [], "ffn_out": []}
    parts: list[list[torch.Tensor]] = [[] for _ in model.blocks]  # per layer: each expert's hidden input
    hooks = []
    for block, seen in zip(model.blocks, parts):
        hooks += hidden_hooks(block.ffn, seen.append)
        hooks.append(block.ffn.register_forward_hook(
            lambda m, args, out: found["ffn_out"].append(outlier_stats(out[0] if isinstance(out, tuple) else out))))
    try:
        with torch.no_grad(), context():
            _, hidden = model.forward(x, return_hidden=True)  # .forward: bypass an in-place compile
    finally:
        for h in hooks:
            h.remove()
    found["ffn_hidden"] = [outlier_stats(torch.cat([a.flatten() for a in seen])) for seen in parts if seen]
    out = {"resid": torch.stack([outlier_stats(h) for h in hidden[1:]])}
    out.update({k: torch.stack(v) for k, v in found.items() if v})
    return out


@register_probe("outliers", field="outliers", doc="per-layer max |a|, kurtosis and what fp8 e4m3 / bf16 would "
                "saturate or flush, at the FFN hidden, FFN output and residual sites")
class OutlierProbe(L.Callback):
    """Per-layer outlier statistics every ``every`` optimizer steps (and at the last step), on the
    probe batch ``x``; result() is the record's ``outliers`` entry."""

    def __init__(self, every: int, x: torch.Tensor):
        self.every, self.x = every, x
        self.steps: list[int] = []
        self.samples: dict[str, dict[str, list]] = {}  # site -> stat -> [per step: [per layer]]
        self.overhead = 0.0

    @classmethod
    def from_config(cls, cfg, dm) -> OutlierProbe | None:
        """The training probes' steps and probe batch (None when train.probe_every is 0)."""
        if cfg.train.probe_every <= 0:
            return None
        x, _ = split_batch(probe_batch(dm))
        return cls(cfg.train.probe_every, x[:PROBE_ROWS].clone())

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        step = trainer.global_step
        if self.every <= 0 or not (step % self.every == 0 or step == trainer.max_steps - 1):
            return
        if self.steps and self.steps[-1] == step:  # accumulation calls this once per step anyway
            return
        t0 = time.perf_counter()
        with evaluating(base_model(pl_module)) as model:
            stats = site_stats(model, self.x.to(pl_module.device), trainer.precision_plugin.forward_context)
        self.add(step, stats)
        self.overhead += time.perf_counter() - t0

    def add(self, step: int, stats: dict[str, torch.Tensor]) -> None:
        values = {site: t.cpu().tolist() for site, t in stats.items()}  # one sync per site
        self.steps.append(step)
        for site, rows in values.items():
            per_stat = self.samples.setdefault(site, {s: [] for s in STATS})
            for j, name in enumerate(STATS):
                per_stat[name].append([row[j] for row in rows])

    def state_dict(self) -> dict:
        return {"steps": self.steps, "samples": self.samples, "overhead": self.overhead}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.samples, self.overhead = list(state["steps"]), dict(state["samples"]), state["overhead"]

    def result(self) -> dict:
        return {"steps": list(self.steps), "sites": self.samples, "stats": list(STATS),
                "e4m3_max": E4M3_MAX, "e4m3_min_normal": E4M3_MIN_NORMAL, "bf16_max": BF16_MAX,
                "bf16_min_normal": BF16_MIN_NORMAL, "probe_tokens": int(self.x.numel()),
                "overhead_seconds": self.overhead}
