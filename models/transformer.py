"""The decoder-only transformer: embedding -> blocks (the scheme's) -> final norm -> LM head."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .attention import rope_cache
from .config import TransformerConfig
from .norms import NORMS
from .schemes import SCHEMES, Block


class Transformer(nn.Module):
    """tokens (B, T) -> logits (B, T, vocab)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(SCHEMES[cfg.scheme](cfg, layer) for layer in range(1, cfg.n_layers + 1))
        self.norm = NORMS[cfg.norm_layer](cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        if self.embed.weight.device.type != "meta":
            self.init_weights()
        # Regional compilation (bench/run/engine/compiling.py): block -> its compiled call, used in training
        # mode only, so evaluation and the probes' hooked forwards run the blocks eagerly. Not a module:
        # nothing is added to the state dict.
        self.compiled_block: Callable[[nn.Module], Callable] | None = None

    @torch.no_grad()
    def init_weights(self) -> None:
        """Every parameter from scratch; call after ``to_empty()`` on a meta-device build."""
        std = self.cfg.init_std
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=std)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=math.sqrt(2 / 5) if self.cfg.scaled_embed else std)
            elif hasattr(m, "reset_parameters") and not isinstance(m, Block):
                m.reset_parameters()  # norms, activation coefficients, GPAS gates
        for block in self.blocks:
            block.reset_parameters()  # scheme-specific: DeepNorm, LNS gains, scaled projections

    def forward(self, idx: torch.Tensor, return_hidden: bool = False):
        h, hidden = self.features(idx, return_hidden=True) if return_hidden else (self.features(idx), None)
        logits = self.lm_head(h)
        return (logits, hidden) if return_hidden else logits

    def features(self, idx: torch.Tensor, return_hidden: bool = False):
        """The final-normed hidden states the LM head reads (B, T, d) (and each block's output)."""
        x = self.embed(idx)
        # fp32 angles, fp64 for an fp64 model (bf16 models keep fp32: RoPE runs in the promoted dtype)
        dt = torch.promote_types(self.embed.weight.dtype, torch.float32)
        rope = rope_cache(idx.shape[1], self.cfg.head_dim, self.cfg.rope_base, idx.device, dt)
        hidden = [x]
        compiled = self.compiled_block if self.training else None
        for block in self.blocks:
            x = compiled(block)(x, rope) if compiled is not None else block(x, rope)
            if return_hidden:
                hidden.append(x)
        h = self.norm(x)
        return (h, hidden) if return_hidden else h
