"""Speed of one training step (forward + backward), fp32 on CPU.

- every FFN activation in models.ACTIVATIONS (parametrized over the registry, so a newly
  registered activation is benchmarked too) at d_model = 256 with the intermediate size
  parameter-matched to a SwiGLU FFN of h = 688 (gated: 688, pointwise: ~1032);
- every residual scheme in models.SCHEMES, with and without GPAS, as a whole small
  Transformer (d = 128, 4 layers, SwiGLU, byte vocabulary) with a cross-entropy loss.

Timings are reported, never asserted. Run with
``pytest benchmarks --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import models
from models import TransformerConfig, build_ffn, matched_intermediate_size

BATCH, SEQ = 8, 128

FFN_D, FFN_REF_H = 256, 688
FFN_GROUP = f"ffn fwd+bwd: d={FFN_D}, h matched to swiglu {FFN_REF_H}, {BATCH}x{SEQ} tokens, fp32 cpu"

MODEL_D, MODEL_LAYERS = 128, 4
MODEL_GROUP = f"transformer fwd+bwd: d={MODEL_D}, {MODEL_LAYERS} layers, swiglu, {BATCH}x{SEQ} tokens, fp32 cpu"


@pytest.mark.parametrize("name", list(models.ACTIVATIONS))
def test_ffn_forward_backward(benchmark, timed, name):
    cfg = TransformerConfig(d_model=FFN_D, ref_intermediate_size=FFN_REF_H, activation=name)
    hidden = matched_intermediate_size(cfg)
    torch.manual_seed(0)
    ffn = build_ffn(name, FFN_D, hidden, **cfg.activation_options())
    x = torch.randn(BATCH, SEQ, FFN_D, requires_grad=True)
    grad_out = torch.randn(BATCH, SEQ, FFN_D)

    benchmark.group = FFN_GROUP
    benchmark.extra_info.update(
        activation=name, gated=bool(ffn.gated), hidden=hidden,
        ffn_params=sum(p.numel() for p in ffn.parameters()),
        swiglu_params=3 * FFN_D * FFN_REF_H, tokens=BATCH * SEQ,
    )

    def step():
        ffn.zero_grad(set_to_none=True)
        x.grad = None
        ffn(x).backward(grad_out)

    timed(step)
    # The step really trained something (a property, not a timing).
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in ffn.parameters())


SCHEME_CASES = [(scheme, gpas) for scheme in models.SCHEMES for gpas in (False, True)]


@pytest.mark.parametrize(
    "scheme,gpas", SCHEME_CASES, ids=[f"{s}+gpas" if g else s for s, g in SCHEME_CASES]
)
def test_scheme_forward_backward(benchmark, timed, scheme, gpas):
    cfg = TransformerConfig(d_model=MODEL_D, n_layers=MODEL_LAYERS, block_size=SEQ, scheme=scheme, gpas=gpas)
    torch.manual_seed(0)
    model = models.Transformer(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (BATCH, SEQ + 1))
    idx, targets = tokens[:, :-1], tokens[:, 1:]

    benchmark.group = MODEL_GROUP
    benchmark.extra_info.update(
        scheme=scheme, gpas=gpas, params=sum(p.numel() for p in model.parameters()),
        extension=gpas and scheme in models.GPAS_EXTENSIONS,
    )

    def step():
        model.zero_grad(set_to_none=True)
        logits = model(idx)
        F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()

    timed(step)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
