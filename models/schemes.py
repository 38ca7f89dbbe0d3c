"""Residual / normalization schemes (GPAS paper, section 3): where norms, residual adds and GPAS sit.

Each block class holds one layer's attention and FFN and implements ``residual(x, f, i)`` for
sub-layer i (0 = attention, 1 = FFN). N is the norm, l the 1-based layer index, L the depth,
G the layer's GPAS (one gate shared by both sub-layers).

| scheme   | sub-layer update                | + GPAS                                   |
|----------|---------------------------------|------------------------------------------|
| pre      | x + f(N(x))                     | G(x + f(N(x)))                           |
| post     | N(x + f(x))                     | N(G(x) + f(x))  [extension, not in paper]|
| sandwich | x + N2(f(N1(x)))                | G(x + N2(f(N1(x))))                      |
| deepnorm | N(alpha x + f(x)), (2L)^(1/4)   | N(alpha G(x) + f(x))                     |
| mixln    | first floor(L/4) post, rest pre | post layers N(G(x) + f(x)); pre as pre   |
| lns      | x + f(N(x) / sqrt(l))           | as pre + GPAS                            |
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .attention import Attention
from .config import TransformerConfig
from .gpas import GPAS
from .moe import build_block_ffn, ffn_modules
from .registry import GPAS_EXTENSIONS, NORMS, SCHEME_DOCS, SCHEMES, register_scheme  # noqa: F401 (re-exported)


class Block(nn.Module):
    """One layer: attention and FFN, each wrapped by the scheme's ``residual``."""

    n_norms = 2  # norms per layer; sandwich has 4

    def __init__(self, cfg: TransformerConfig, layer: int):
        super().__init__()
        self.cfg, self.layer = cfg, layer  # layer is 1-based
        self.attn = Attention(cfg.d_model, cfg.n_heads, cfg.kv_heads)
        self.ffn = build_block_ffn(cfg)  # an FFN, or an MoE of FFNs (cfg.ffn)
        self.norms = nn.ModuleList(NORMS[cfg.norm_layer](cfg.d_model, cfg.norm_eps) for _ in range(self.n_norms))
        self.gpas = GPAS(cfg.gpas_act, cfg.gpas_beta, cfg.gpas_stop_grad, cfg.gpas_learnable,
                         cfg.gpas_init) if cfg.gpas else None

    def forward(self, x: torch.Tensor, rope) -> torch.Tensor:
        x = self.residual(x, lambda h: self.attn(h, rope), 0)
        return self.residual(x, self.ffn, 1)

    def residual(self, x, f, i):
        raise NotImplementedError

    def g(self, x, position: str):
        """GPAS at ``position`` when it is on and placed there; identity otherwise."""
        if self.gpas is not None and self.cfg.gpas_position == position:
            return self.gpas(x)
        return x

    def reset_parameters(self):
        """Scheme-specific init, applied after the global init (see Transformer.init_weights)."""
        L = self.cfg.n_layers
        if self.cfg.scaled_out_proj:
            for lin in (self.attn.o, *(f.down for f in ffn_modules(self.ffn))):
                nn.init.normal_(lin.weight, std=self.cfg.init_std / math.sqrt(2 * L))


class PreBlock(Block):
    """x + f(N(x)); GPAS after the sub-layer by default (other positions selectable)."""

    def pre_scale(self) -> float:
        return 1.0

    def post_norm(self, h, i):
        return h

    def residual(self, x, f, i):
        x = self.g(x, "before_sublayer")
        h = self.g(self.norms[i](x), "after_norm")
        scale = self.pre_scale()
        if scale != 1.0:
            h = h * scale
        h = self.g(self.post_norm(f(h), i), "after_fn")
        return self.g(x + h, "after_sublayer")


class SandwichBlock(PreBlock):
    """x + N2(f(N1(x))): a second norm on each sub-layer's output."""

    n_norms = 4

    def post_norm(self, h, i):
        return self.norms[2 + i](h)


class LNSBlock(PreBlock):
    """LayerNorm scaling: x + f(N(x) / sqrt(l)); lns_mode 'gain' folds 1/sqrt(l) into the gain init."""

    def pre_scale(self) -> float:
        # a python float, not a buffer: nothing to lose when built on the meta device
        return 1.0 / math.sqrt(self.layer) if self.cfg.lns_mode == "fixed" else 1.0

    def reset_parameters(self):
        super().reset_parameters()
        if self.cfg.lns_mode == "gain":
            for norm in self.norms:
                nn.init.constant_(norm.weight, 1.0 / math.sqrt(self.layer))


class PostBlock(Block):
    """N(alpha x + f(x)), alpha = 1; GPAS on the shortcut: N(alpha G(x) + f(x))."""

    def alpha(self) -> float:
        return 1.0

    def residual(self, x, f, i):
        shortcut = self.gpas(x) if self.gpas is not None else x
        return self.norms[i](self.alpha() * shortcut + f(x))


class DeepNormBlock(PostBlock):
    """DeepNorm: N(alpha x + f(x)), alpha = (2L)^(1/4); init gain beta = (8L)^(-1/4)."""

    def alpha(self) -> float:
        return (2 * self.cfg.n_layers) ** 0.25

    def beta(self) -> float:
        return (8 * self.cfg.n_layers) ** -0.25

    def reset_parameters(self):
        super().reset_parameters()
        mode = self.cfg.deepnorm_init
        if mode == "all" or (mode == "reference" and not self.cfg.gpas):
            a = self.attn
            for lin in (a.q, a.k):
                nn.init.xavier_normal_(lin.weight, gain=1.0)
            ffns = [lin for f in ffn_modules(self.ffn) for lin in (f.up, f.down) + ((f.gate,) if f.gated else ())]
            for lin in (a.v, a.o, *ffns):
                nn.init.xavier_normal_(lin.weight, gain=self.beta())


def mixln_block(cfg: TransformerConfig, layer: int) -> Block:
    """Mix-LN: the first floor(L * mixln_post_fraction) layers post-LN, the rest pre-LN."""
    n_post = math.floor(cfg.n_layers * cfg.mixln_post_fraction)
    return PostBlock(cfg, layer) if layer <= n_post else PreBlock(cfg, layer)


for _name, _block, _doc in (
    ("pre", PreBlock, "Pre-LN: x + f(N(x))"),
    ("post", PostBlock, "Post-LN: N(x + f(x)); +gpas is an extension (not in the paper): N(G(x) + f(x))"),
    ("sandwich", SandwichBlock, "Sandwich-LN: x + N2(f(N1(x)))"),
    ("deepnorm", DeepNormBlock, "DeepNorm: N(alpha x + f(x)), alpha=(2L)^(1/4), beta-scaled xavier init"),
    ("mixln", mixln_block, "Mix-LN: first floor(L/4) layers post-LN, the rest pre-LN"),
    ("lns", LNSBlock, "LayerNorm scaling: x + f(N(x)/sqrt(l))"),
):
    register_scheme(_name, _block, doc=_doc, gpas_extension=_name == "post")
