"""Mixture-of-experts FFN: a container of ordinary FFNs (``build_ffn``) behind a top-k router.

For the T tokens x_t of a batch (flattened over batch and sequence), E routed experts FFN_e,
S shared experts and a bias-free linear router W_r (d -> E):

    logits_t = W_r x_t                              (T, E), in fp32 even under bf16 autocast or bf16 weights
    p_t      = softmax(logits_t)                    over all E experts, in fp32
    softmax='before' (OLMoE, default):  (w_t, K_t) = top_k(p_t)          weights not renormalised
    softmax='after'  (Mixtral):         K_t = top_k(logits_t), w_t = softmax(logits_t[K_t])
    y_t = sum_{e in K_t} w_te FFN_e(x_t) + sum_{s < S} FFN_s^shared(x_t)

Auxiliary router losses (per MoE layer, then averaged over the layers; the weights are
``moe_lb_weight`` and ``moe_z_weight`` of TransformerConfig):
- load balancing (Switch Transformer, Fedus et al. 2021, eq. 4; OLMoE, Muennighoff et al. 2024,
  eq. 2, as megablocks computes it for top-k):
      L_LB = E * sum_i f_i P_i,  f_i = (1 / (T k)) #{(t, j): K_tj = i},  P_i = (1 / T) sum_t p_ti
  f_i is the fraction of the T k routing assignments that go to expert i (before any capacity
  drop), P_i the mean router probability; L_LB = 1 under a perfectly uniform router. (Hugging
  Face's ``load_balancing_loss_func`` sums f over the k slots without the 1/k: k times this.)
- router z-loss (ST-MoE, Zoph et al. 2022, eq. 5; OLMoE eq. 3):
      L_Z = (1 / T) sum_t (log sum_i exp logits_ti)^2

Capacity (optional, Switch section 2.2): each expert takes at most
C = ceil(capacity_factor * T k / E) assignments, first come first served in token order; the
rest are dropped (they add nothing; the residual stream carries the token on). Counted in
``stats['dropped']``. None (the default, as OLMoE's dropless training) never drops.

Compute: the T k assignments are sorted by expert (a stable argsort, no per-token Python), so
each expert sees one contiguous slice. Two interchangeable paths give the same numbers:
- ``loop`` (reference): each expert module runs on its slice (a Python loop over experts);
- ``grouped``: the experts' stacked weights in one grouped matrix product per projection
  (``torch.nn.functional.grouped_mm``: bf16 on CUDA SM80+ in torch 2.13; a slower fallback
  elsewhere). ``moe_grouped_mm='auto'`` uses it in training on CUDA with bf16 compute and
  16-byte-aligned widths; eval (validation, probes) always takes the loop, so that probe hooks
  on each expert's ``down`` see every expert.
On the meta device (the FLOP counter's model) and with ``balanced = True`` (the memory planner's
model, under fake tensors) routing is data-dependent and cannot run: there
``experts[0]`` runs on T k rows, exactly the active FLOPs of a balanced, dropless dispatch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .ffn import FFN, build_ffn
from .sizing import intermediate_size

SOFTMAX_ORDERS = {"before": "softmax over all experts, then top-k (OLMoE; weights not renormalised)",
                  "after": "top-k of the logits, then softmax over the k chosen (Mixtral)"}
GROUPED_MODES = ("auto", "on", "off")


def load_balancing_loss(probs: torch.Tensor, idx: torch.Tensor, n_experts: int) -> torch.Tensor:
    """E * sum_i f_i P_i (module docstring); probs (T, E) full softmax, idx (T, k) chosen experts."""
    f = torch.bincount(idx.flatten(), minlength=n_experts).to(probs.dtype) / idx.numel()
    return n_experts * (f * probs.mean(0)).sum()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """mean_t (logsumexp_i logits_ti)^2, in fp32 (or fp64)."""
    return torch.logsumexp(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1).square().mean()


def route(logits: torch.Tensor, top_k: int, softmax: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(probs (T, E), weights (T, k), idx (T, k)) for softmax 'before' or 'after' top-k; fp32 at least."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # upcast bf16; never downcast fp64
    probs = logits.softmax(-1)
    if softmax == "before":
        weights, idx = probs.topk(top_k, dim=-1)
    else:
        top, idx = logits.topk(top_k, dim=-1)
        weights = top.softmax(-1)
    return probs, weights, idx


def grouped_available(x: torch.Tensor, d: int, h: int) -> bool:
    """Where torch 2.13's grouped_mm has a fast kernel: CUDA SM80+, bf16 compute, widths whose rows
    are 16-byte aligned."""
    if x.device.type != "cuda" or torch.cuda.get_device_capability(x.device) < (8, 0):
        return False
    dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else x.dtype
    return dtype == torch.bfloat16 and d % 8 == 0 and h % 8 == 0


class MoE(nn.Module):
    """Top-k routed FFN experts (+ always-on shared experts); see the module docstring.

    After each training-mode forward: ``aux`` holds this layer's 'lb' and 'z' losses (with grad),
    ``stats`` the detached routing statistics: 'load' (E,) assignments per expert (kept and dropped),
    'dropped' (assignments over capacity), 'entropy' (mean router entropy in nats), 'assignments' (T k).
    """

    def __init__(self, d_model: int, make_expert: Callable[[], FFN], n_experts: int, top_k: int,
                 n_shared: int = 0, softmax: str = "before", capacity_factor: float | None = None,
                 grouped: str = "auto"):
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"moe top_k must lie in [1, n_experts={n_experts}], got {top_k}")
        if softmax not in SOFTMAX_ORDERS or grouped not in GROUPED_MODES:
            raise ValueError(f"moe softmax must be one of {list(SOFTMAX_ORDERS)} and grouped one of {GROUPED_MODES}")
        if capacity_factor is not None and not capacity_factor > 0:
            raise ValueError(f"moe capacity_factor must be > 0 or None, got {capacity_factor}")
        self.n_experts, self.top_k, self.softmax = n_experts, top_k, softmax
        self.capacity_factor, self.grouped = capacity_factor, grouped
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(make_expert() for _ in range(n_experts))
        self.shared = nn.ModuleList(make_expert() for _ in range(n_shared))
        self.gated = self.experts[0].gated
        self.balanced = False  # True: the balanced dispatch without routing (tensors without data)
        self.aux: dict[str, torch.Tensor] = {}
        self.stats: dict[str, torch.Tensor] = {}

    def capacity(self, n_tokens: int) -> int | None:
        if self.capacity_factor is None:
            return None
        return math.ceil(self.capacity_factor * n_tokens * self.top_k / self.n_experts)

    def router_logits(self, x: torch.Tensor) -> torch.Tensor:
        """W_r x in fp32 (fp64 stays fp64), outside autocast and whatever the weights' dtype: top-k
        and softmax are sensitive to rounding (Switch Transformer's selective precision). An fp32
        model computes exactly what ``self.router(x)`` does."""
        dtype = torch.promote_types(x.dtype, torch.float32)
        off = contextlib.nullcontext() if x.device.type == "meta" else torch.autocast(x.device.type, enabled=False)
        with off:
            return F.linear(x.to(dtype), self.router.weight.to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        logits = self.router_logits(x)
        probs, weights, idx = route(logits, self.top_k, self.softmax)
        if x.device.type == "meta" or self.balanced:  # FLOP counting, memory planning: T k rows, one expert
            ys = self.experts[0](x.repeat(self.top_k, 1)).view(self.top_k, *x.shape)
            y = (ys * weights.t().unsqueeze(-1).to(ys.dtype)).sum(0)  # the router's gradient path, as in training
        else:
            y, stats = self.dispatch(x, weights, idx)
            if self.training:  # eval forwards (validation, probes) leave the training step's values alone
                self.aux = {"lb": load_balancing_loss(probs, idx, self.n_experts), "z": router_z_loss(logits)}
                with torch.no_grad():
                    stats["entropy"] = -torch.special.xlogy(probs, probs).sum(-1).mean()
                self.stats = stats
        for expert in self.shared:
            y = y + expert(x)
        return y.view(shape)

    def dispatch(self, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """sum_j w_tj FFN_{idx_tj}(x_t) with the assignments grouped by expert (sort, gather, scatter),
        and the load statistics."""
        T, k, E = x.shape[0], self.top_k, self.n_experts
        flat = idx.flatten()  # assignment a = t * k + j
        order = flat.argsort(stable=True)  # by expert, token order kept within an expert
        slot = order.argsort()  # inverse permutation: the row of ys that holds assignment a
        counts = torch.bincount(flat, minlength=E)
        cap = self.capacity(T)
        kept = counts
        if cap is not None:  # position of each sorted assignment within its expert's queue
            starts = counts.cumsum(0) - counts
            keep = torch.arange(order.numel(), device=x.device) - starts[flat[order]] < cap
            order = order[keep]
            kept = counts.clamp(max=cap)
            # a kept assignment's row among the kept ones; a dropped one points at the zero row (index M)
            slot = torch.where(keep[slot], keep.cumsum(0)[slot] - 1, order.numel())
        stats = {"load": counts.detach(), "dropped": (counts - kept).sum().detach(), "assignments": flat.numel()}
        xs = x[order // k]  # (M, d): each kept assignment's token, grouped by expert
        if self.training and (self.grouped == "on" or (self.grouped == "auto" and grouped_available(
                x, x.shape[-1], self.experts[0].up.out_features))):
            ys = self.grouped_experts(xs, kept)
        else:
            ys = torch.cat([expert(chunk) for expert, chunk in zip(self.experts, xs.split(kept.tolist()))])
        # back to (T, k) slots by gathers only (sorts and gathers: deterministic on CUDA, no atomics)
        ys = torch.cat([ys, ys.new_zeros(1, ys.shape[1])])[slot].view(T, k, -1)
        return (ys * weights.unsqueeze(-1).to(ys.dtype)).sum(1).to(x.dtype), stats

    def grouped_experts(self, xs: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        """Every expert's FFN as one grouped product per projection (stacked weights), same math as the loop."""
        dtype = torch.get_autocast_dtype("cuda") if xs.is_cuda and torch.is_autocast_enabled("cuda") else xs.dtype
        offs = kept.cumsum(0).to(torch.int32)
        xs = xs.to(dtype)

        def proj(name: str, inp: torch.Tensor) -> torch.Tensor:  # (M, in) @ (E, in, out) by groups
            w = torch.stack([getattr(e, name).weight for e in self.experts]).to(dtype)  # (E, out, in)
            with torch.autocast(xs.device.type, enabled=False):
                return F.grouped_mm(inp, w.transpose(-2, -1), offs=offs)

        up = proj("up", xs)
        gate = proj("gate", xs) if self.gated else None
        act = self.experts[0].act
        if not any(True for _ in act.parameters()):  # the same function for every expert: one call
            a = act(gate, up) if self.gated else act(up)
        else:  # per-expert scalars (PolyNorm, PolyReLU, PReLU): each expert's activation on its slice
            sizes = kept.tolist()
            ups = up.split(sizes)
            gates = gate.split(sizes) if self.gated else [None] * len(sizes)
            a = torch.cat([e.act(g, u) if self.gated else e.act(u) for e, g, u in zip(self.experts, gates, ups)])
        return proj("down", a.to(dtype))


def moe_layers(model: nn.Module) -> list[MoE]:
    return [m for m in model.modules() if isinstance(m, MoE)]


def router_losses(layers: list[MoE]) -> dict[str, torch.Tensor]:
    """'lb' and 'z' of the last forward, each averaged over the MoE layers (empty without MoE)."""
    if not layers or not layers[0].aux:
        return {}
    return {name: torch.stack([m.aux[name] for m in layers]).mean() for name in ("lb", "z")}


def ffn_modules(ffn: nn.Module) -> list[FFN]:
    """The ordinary FFNs inside an FFN slot: itself when dense, the experts (routed, then shared) when MoE."""
    return [ffn] if isinstance(ffn, FFN) else [m for m in ffn.modules() if isinstance(m, FFN)]


def build_block_ffn(cfg) -> nn.Module:
    """A layer's FFN slot from TransformerConfig: one FFN (ffn='dense') or an MoE of the same FFNs."""
    h = intermediate_size(cfg)

    def make() -> FFN:
        return build_ffn(cfg.activation, cfg.d_model, h, cfg.kernels, **cfg.activation_options())

    return make() if cfg.ffn == "dense" else MoE(cfg.d_model, make, **cfg.moe_options())


def weighted_router_loss(layers: list[MoE], cfg) -> tuple[torch.Tensor | int, dict[str, torch.Tensor]]:
    """(moe_lb_weight * L_LB + moe_z_weight * L_Z, the unweighted losses) of the last forward; (0, {}) if dense."""
    aux = router_losses(layers)
    if not aux:
        return 0, aux
    return cfg.moe_lb_weight * aux["lb"] + cfg.moe_z_weight * aux["z"], aux
