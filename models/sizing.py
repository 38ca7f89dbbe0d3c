"""Parameter matching and exact parameter counts, as pure functions of the config.

The rule (PolyCom section 4 / REFERENCE.md section 2): every activation gets the intermediate
size h whose FFN parameter count is nearest the scale's SwiGLU reference, 3 d h_ref. A gated
FFN has 3 d h weights, so h = h_ref; a pointwise one has 2 d h, so h = 3/2 h_ref, minus
whatever the activation itself learns (PolyReLU/PolyNorm's r + 1 scalars, PReLU's 1):
at d = 2048, h_ref = 5504 this gives 5504 and 8256, as the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .activations import ACTIVATIONS


def activation_params(cfg) -> int:
    """Learned scalars inside one FFN's activation (0 for most)."""
    from .ffn import build_activation

    with torch.device("meta"):
        act = build_activation(cfg.activation, **cfg.activation_options())
    return sum(p.numel() for p in act.parameters())


def matched_intermediate_size(cfg) -> int:
    """The h (a multiple of ffn_multiple_of) whose FFN count is nearest 3 d h_ref; ties go down."""
    d, k = cfg.d_model, cfg.ffn_multiple_of
    per_unit = (3 if ACTIVATIONS[cfg.activation].gated else 2) * d
    target = 3 * d * cfg.ref_intermediate_size - activation_params(cfg)
    lo = max(k, target // per_unit // k * k)
    return min((lo, lo + k), key=lambda h: (abs(per_unit * h - target), h))


def intermediate_size(cfg) -> int:
    return cfg.intermediate_size or matched_intermediate_size(cfg)


@dataclass(frozen=True)
class ParamCounts:
    total: int
    embedding: int  # token embedding + untied LM head
    ffn: int  # all layers' FFNs, activation scalars included
    attention: int
    norms: int
    gpas: int
    intermediate_size: int
    reference_total: int  # the same model with SwiGLU at h_ref

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding

    @property
    def deviation(self) -> float:
        """(total - reference) / reference."""
        return (self.total - self.reference_total) / self.reference_total


def count_params(cfg) -> ParamCounts:
    """Exact counts from the formula (tests check them against a built model)."""
    from .schemes import SandwichBlock

    d, L, V = cfg.d_model, cfg.n_layers, cfg.vocab_size
    h = intermediate_size(cfg)
    gated = ACTIVATIONS[cfg.activation].gated
    kv = cfg.kv_heads * cfg.head_dim
    attention = L * (2 * d * d + 2 * d * kv)
    ffn = L * ((3 if gated else 2) * d * h + activation_params(cfg))
    per_norm = d if cfg.norm_layer == "rmsnorm" else 2 * d
    norms_per_layer = SandwichBlock.n_norms if cfg.scheme == "sandwich" else 2
    norms = (L * norms_per_layer + 1) * per_norm  # + final norm
    gpas = L if cfg.gpas else 0
    embedding = V * d * (1 if cfg.tie_embeddings else 2)
    total = attention + ffn + norms + gpas + embedding
    ref_total = total - ffn + L * 3 * d * cfg.ref_intermediate_size
    return ParamCounts(total, embedding, ffn, attention, norms, gpas, h, ref_total)
