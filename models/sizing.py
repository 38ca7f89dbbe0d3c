"""Parameter matching and exact parameter counts, as pure functions of the config.

The rule (PolyCom section 4): every activation gets the intermediate
size h whose FFN parameter count is nearest the scale's SwiGLU reference, 3 d h_ref. A gated
FFN has 3 d h weights, so h = h_ref; a pointwise one has 2 d h, so h = 3/2 h_ref, minus
whatever the activation itself learns (PolyReLU/PolyNorm's r + 1 scalars, PReLU's 1):
at d = 2048, h_ref = 5504 this gives 5504 and 8256, as the paper.

MoE (``ffn='moe'``): the same rule sizes each expert against the expert reference
``moe_ref_intermediate_size`` (OLMoE-1B-7B: 1024 for SwiGLU, so 1536 for PolyNorm, as PolyCom).
Per layer the FFN holds E routed experts, S shared experts and the router (d x E); a token
activates k routed experts, the shared ones and the router.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .ffn import build_activation
from .registry import ACTIVATIONS, NORMS, SCHEMES


def activation_params(cfg) -> int:
    """Learned scalars inside one FFN's activation (0 for most)."""
    with torch.device("meta"):
        act = build_activation(cfg.activation, **cfg.activation_options())
    return sum(p.numel() for p in act.parameters())


def matched_intermediate_size(cfg, ref: int | None = None) -> int:
    """The h (a multiple of ffn_multiple_of) whose FFN count is nearest 3 d h_ref; ties go down.
    ``ref`` replaces h_ref (the MoE expert reference)."""
    d, k = cfg.d_model, cfg.ffn_multiple_of
    per_unit = (3 if ACTIVATIONS[cfg.activation].gated else 2) * d
    target = 3 * d * (ref or cfg.ref_intermediate_size) - activation_params(cfg)
    lo = max(k, target // per_unit // k * k)
    return min((lo, lo + k), key=lambda h: (abs(per_unit * h - target), h))


def expert_ref_size(cfg) -> int:
    """The SwiGLU size one expert is matched to: moe_ref_intermediate_size, else h_ref / k."""
    return cfg.moe_ref_intermediate_size or max(1, cfg.ref_intermediate_size // cfg.moe_top_k)


def intermediate_size(cfg) -> int:
    """The FFN width: of the dense FFN, or of each expert when ffn='moe'."""
    if cfg.ffn == "moe":
        return cfg.moe_intermediate_size or matched_intermediate_size(cfg, expert_ref_size(cfg))
    return cfg.intermediate_size or matched_intermediate_size(cfg)


def scheme_params(cfg) -> tuple[int, int]:
    """(norm layers, the scheme's own learned scalars) over all L blocks, read from the blocks built
    on the meta device (no memory): a registered scheme's extra norms or scalars (ReZero's alpha) count."""
    n_norms = own = 0
    with torch.device("meta"):
        for layer in range(1, cfg.n_layers + 1):
            block = SCHEMES[cfg.scheme](cfg, layer)
            n_norms += len(getattr(block, "norms", ()))
            own += sum(p.numel() for n, p in block.named_parameters()
                       if n.split(".")[0] not in ("attn", "ffn", "norms", "gpas"))
    return n_norms, own


@dataclass(frozen=True)
class ParamCounts:
    total: int
    embedding: int  # token embedding + untied LM head
    ffn: int  # all layers' FFNs, activation scalars included
    attention: int
    norms: int
    gpas: int
    intermediate_size: int
    reference_total: int  # the same model with SwiGLU at h_ref (MoE: SwiGLU experts at the expert reference)
    active: int = 0  # parameters one token uses (= total for a dense model)
    expert_ffn: int = 0  # one expert's FFN parameters (MoE; activation scalars included)
    router: int = 0  # all layers' router weights (MoE)

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding

    @property
    def deviation(self) -> float:
        """(total - reference) / reference."""
        return (self.total - self.reference_total) / self.reference_total


_COUNTS: dict = {}  # config values and registered parts -> counts: a plan of 10^4 cells has few distinct models


def count_params(cfg) -> ParamCounts:
    """Exact counts from the formula (tests check them against a built model); memoized."""
    key = (repr(vars(cfg)), ACTIVATIONS.get(cfg.activation), SCHEMES.get(cfg.scheme), NORMS.get(cfg.norm_layer))
    if key not in _COUNTS:
        if len(_COUNTS) > 4096:
            _COUNTS.clear()
        _COUNTS[key] = _count_params(cfg)
    return _COUNTS[key]


def _count_params(cfg) -> ParamCounts:
    d, L, V = cfg.d_model, cfg.n_layers, cfg.vocab_size
    h = intermediate_size(cfg)
    gated = ACTIVATIONS[cfg.activation].gated
    kv = cfg.kv_heads * cfg.head_dim
    attention = L * (2 * d * d + 2 * d * kv)
    one_ffn = (3 if gated else 2) * d * h + activation_params(cfg)
    ffn, active_ffn, router, ref_ffn = L * one_ffn, L * one_ffn, 0, L * 3 * d * cfg.ref_intermediate_size
    if cfg.ffn == "moe":
        E, k, S = cfg.moe_experts, cfg.moe_top_k, cfg.moe_shared_experts
        router = L * d * E
        ffn, active_ffn = L * (E + S) * one_ffn + router, L * (k + S) * one_ffn + router
        ref_ffn = L * (E + S) * 3 * d * expert_ref_size(cfg) + router
    with torch.device("meta"):  # rmsnorm d (gain), layernorm 2 d (gain, bias), a registered one its own
        per_norm = sum(p.numel() for p in NORMS[cfg.norm_layer](d, cfg.norm_eps).parameters())
    n_norms, scheme_own = scheme_params(cfg)
    norms = (n_norms + 1) * per_norm  # + final norm
    gpas = L if cfg.gpas else 0
    embedding = V * d * (1 if cfg.tie_embeddings else 2)
    total = attention + ffn + norms + gpas + embedding + scheme_own
    ref_total = total - ffn + ref_ffn
    return ParamCounts(total, embedding, ffn, attention, norms, gpas, h, ref_total,
                       active=total - ffn + active_ffn, expert_ffn=one_ffn if cfg.ffn == "moe" else 0, router=router)
