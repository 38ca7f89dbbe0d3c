"""Routing statistics of mixture-of-experts cells (models/moe.py), as one Lightning callback.

Sampled at the same optimizer steps as the other probes (train.probe_every, the first step and
the last), from the routing of the last TRAINING micro-batch before the sample (each MoE layer
keeps its detached ``stats``; nothing is recomputed and nothing is read back between samples):
- load: per layer, the fraction of the T k routing assignments each expert received (sums to 1;
  uniform = 1/E), before any capacity drop; and its max/mean ratio (1 = perfectly balanced, E / k
  at worst);
- router entropy: per layer, the mean over tokens of -sum_i p_i log p_i of the full softmax (nats;
  log E = uniform);
- dropped: per layer, the fraction of assignments over capacity (0 when moe_capacity_factor is None);
- the router losses of that micro-batch (load balancing, z) per layer.

The other probes (training.py, outliers.py) see an MoE through its ordinary expert FFNs: FFN
outliers (max |a|, kurtosis) and the outlier probe's ``ffn_hidden`` site pool the hidden activations
of every expert of a layer (forward.hidden_hooks), effective rank is computed per expert matrix and
reported as the mean over the layer's experts (shared experts included), and gradient and weight
norms cover the whole FFN slot (router included).
"""

from __future__ import annotations

import lightning as L
import torch

from models.moe import MoE, moe_layers

from ...config.probes import register_probe
from .forward import base_model


def routing_rows(layers: list[MoE]) -> dict[str, torch.Tensor]:
    """Per-layer routing statistics of the last forward, as device tensors (no host sync)."""
    load = torch.stack([m.stats["load"].float() for m in layers])  # (L, E)
    assignments = load.sum(1, keepdim=True).clamp(min=1)
    frac = load / assignments
    return {
        "load": frac,
        "load_max_over_mean": frac.max(1).values * frac.shape[1],
        "router_entropy": torch.stack([m.stats["entropy"].float() for m in layers]),
        "dropped_fraction": torch.stack([m.stats["dropped"].float() for m in layers]) / assignments.squeeze(1),
        "lb_loss": torch.stack([m.aux["lb"].detach().float() for m in layers]),
        "z_loss": torch.stack([m.aux["z"].detach().float() for m in layers]),
    }


@register_probe("moe", field="moe", doc="MoE cells: expert load per layer, router entropy, dropped tokens, "
                "router losses")
class MoEProbes(L.Callback):
    """Expert load per layer, router entropy, dropped tokens and router losses every ``every`` steps."""

    KEYS = ("load", "load_max_over_mean", "router_entropy", "dropped_fraction", "lb_loss", "z_loss")

    def __init__(self, every: int, capacity_factor: float | None = None):
        self.every, self.capacity_factor = every, capacity_factor
        self.samples: dict[str, list] = {k: [] for k in ("steps",) + self.KEYS}

    @classmethod
    def from_config(cls, cfg, dm=None) -> MoEProbes | None:  # the routing needs no data
        """None for a dense model or when train.probe_every is 0."""
        if cfg.model.ffn != "moe" or cfg.train.probe_every <= 0:
            return None
        return cls(cfg.train.probe_every, cfg.model.moe_capacity_factor)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        step = trainer.global_step
        if not (step % self.every == 0 or step == trainer.max_steps - 1):
            return
        layers = moe_layers(base_model(pl_module))
        if not layers or "load" not in layers[0].stats or not layers[0].aux:
            return
        rows = routing_rows(layers)
        flat = torch.cat([v.flatten() for v in rows.values()]).tolist()  # one host sync
        self.samples["steps"].append(step)
        for name, v in rows.items():
            values, flat = flat[:v.numel()], flat[v.numel():]
            self.samples[name].append([values[i:i + v.shape[1]] for i in range(0, len(values), v.shape[1])]
                                      if v.ndim == 2 else values)

    def state_dict(self) -> dict:
        return {"samples": self.samples}

    def load_state_dict(self, state: dict) -> None:
        self.samples = state["samples"]

    def result(self) -> dict:
        """JSON-serializable: per sample, per layer (load: per layer, per expert)."""
        return {"every": self.every, "capacity_factor": self.capacity_factor,
                "basis": "last training micro-batch before each sampled optimizer step", **self.samples}
