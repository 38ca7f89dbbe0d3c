"""A scale ladder: model shapes spread log-evenly over a parameter range, each with its token budget
and learning rate from stated rules, as matrix settings the ordinary runner trains.

The rules (docs/scaling-laws.md):

- Shape. Non-embedding parameters of a LLaMA block are about 12 d^2 per layer (4 d^2 attention, 3 d h
  with the SwiGLU reference h = 8/3 d). With a fixed aspect ratio d = aspect * L this is 12 aspect^2 L^3,
  so L = round((N / (12 aspect^2))^(1/3)) (at least 1), then d is the multiple of ``head_dim`` that puts
  12 d^2 L nearest N, n_heads = d / head_dim, and h_ref = 8/3 d rounded to a multiple of 8. Every other
  activation is parameter-matched to that h_ref exactly as at the preset scales (models/sizing.py).
  A rung's N is the exact count of the SwiGLU model built from that shape.
- Tokens. ``tokens_per_param`` x N (default 20, Chinchilla's ratio), in whole optimizer steps of
  batch x sequence tokens (at least ``min_steps``).
- Learning rate. The base LR (the recipe's) at the reference width ``lr_width``, scaled by
  lr_width / d beyond it (wider models take smaller steps, as muP's hidden-layer rule), never above the
  base; warmup a fixed share of the steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from models import TransformerConfig, count_params

ASPECT = 32  # d_model / n_layers (micro: 128 / 4)
HEAD_DIM = 32  # micro's head size
TOKENS_PER_PARAM = 20.0
WARMUP_SHARE = 0.1
LR_WIDTH = 128  # the width the CPU recipe's LR was tuned at (micro)
MIN_STEPS = 20


@dataclass(frozen=True)
class Rung:
    name: str  # r1, r2, ... smallest first
    d_model: int
    n_layers: int
    n_heads: int
    ref_intermediate_size: int
    params: int  # exact non-embedding parameters of the SwiGLU model of this shape
    tokens: int
    max_steps: int
    warmup_steps: int
    lr: float

    def settings(self) -> dict:
        """The rung as dotted config settings (a matrix cell's fixed values)."""
        return {"model.d_model": self.d_model, "model.n_layers": self.n_layers, "model.n_heads": self.n_heads,
                "model.ref_intermediate_size": self.ref_intermediate_size, "train.max_steps": self.max_steps,
                "train.warmup_steps": self.warmup_steps, "train.lr": self.lr}


def shape_for(target: float, aspect: int = ASPECT, head_dim: int = HEAD_DIM) -> tuple[int, int]:
    """(d_model, n_layers) under the aspect-ratio rule for ``target`` non-embedding parameters. The rule
    is kept even where integer depth lands a rung off its target: one family of shapes, and the fit uses
    each rung's exact count, not the target."""
    layers = max(1, round((target / (12 * aspect ** 2)) ** (1 / 3)))
    units = max(1, round(math.sqrt(target / (12 * layers)) / head_dim))
    return units * head_dim, layers


def parse_range(text: str) -> tuple[float, float]:
    """'2e4:1e6' -> (2e4, 1e6); one clear line otherwise."""
    lo, sep, hi = str(text).partition(":")
    try:
        a, b = float(lo), float(hi)
    except ValueError:
        a = b = float("nan")
    if not sep or not (0 < a < b) or not math.isfinite(b):
        raise ValueError(f"--params takes LOW:HIGH with 0 < LOW < HIGH (e.g. 2e4:1e6), got {text!r}")
    return a, b


def build_ladder(low: float, high: float, rungs: int, base: TransformerConfig, batch_tokens: int, base_lr: float,
                 tokens_per_param: float = TOKENS_PER_PARAM, aspect: int = ASPECT, head_dim: int = HEAD_DIM,
                 lr_width: int = LR_WIDTH, min_steps: int = MIN_STEPS) -> list[Rung]:
    """``rungs`` shapes log-evenly from ``low`` to ``high`` non-embedding parameters (shapes that round to
    the same one are kept once), each with its tokens, steps, warmup and LR by the rules above."""
    if rungs < 2:
        raise ValueError(f"--rungs must be at least 2 (a law needs two sizes), got {rungs}")
    if batch_tokens < 1:
        raise ValueError(f"a step must hold at least one token, got {batch_tokens}")
    out, seen = [], set()
    for i in range(rungs):
        target = low * (high / low) ** (i / (rungs - 1))
        d, layers = shape_for(target, aspect, head_dim)
        if (d, layers) in seen:
            continue
        seen.add((d, layers))
        h_ref = max(8, round(8 * d / 3 / 8) * 8)
        cfg = replace(base, d_model=d, n_layers=layers, n_heads=d // head_dim, ref_intermediate_size=h_ref,
                      activation="swiglu", intermediate_size=None, ffn="dense")
        n = count_params(cfg).non_embedding
        steps = max(min_steps, math.ceil(tokens_per_param * n / batch_tokens))
        lr = base_lr * min(1.0, lr_width / d)
        out.append(Rung(f"r{len(out) + 1}", d, layers, d // head_dim, h_ref, n, steps * batch_tokens, steps,
                        max(1, round(WARMUP_SHARE * steps)), lr))
    return out
