"""No graph break in a compiled transformer block: regional compilation (bench/run/engine/compiling.py) compiles
each block as one graph, and a break would split it, run Python between the pieces and lose the fusion
the compiled step is for. Each block is traced the way the regional path calls it (the model's own
``compiled_block`` hook, same inputs, same autocast) by ``torch._dynamo.explain``: dynamo's tracing,
no code generation, about 0.2 s a block.

Coverage: the full product of 21 activations x 6 schemes x GPAS on/off x 2 kernel sets is 504 blocks
(~100 s, traced once by hand with no break found), too slow for CI. So every activation appears once,
every scheme with and without GPAS once, every GPAS position, both norm layers, both kernel sets and
fp32 / bf16 autocast each at least once, cycled together (ROWS below)."""

from __future__ import annotations

from itertools import cycle

import pytest
import torch

import models
from models import TransformerConfig
from models.transformer import Transformer

SCHEMES = [(s, g) for s in models.SCHEMES for g in (False, True)]
POSITIONS = list(models.POSITIONS)
NORM_LAYERS = list(models.NORMS)
# the activations with a fast path (models/kernels FAST): each also traced through it
POST_STYLE = ("post", "deepnorm")
FUSED = ("swiglu", "gelu", "relu2", "geglu", "polyrelu", "polynorm", "powlu", "swiglu_clip")


def rows():
    """One row per activation (then per fast path), the other choices cycled through alongside; the GPAS
    position advances on pre-style GPAS rows only (post-style schemes put GPAS on the shortcut, one
    position), so each is traced with GPAS on."""
    out, schemes, positions = [], cycle(SCHEMES), cycle(POSITIONS)
    norms, casts = cycle(NORM_LAYERS + NORM_LAYERS[:1]), cycle((False, False, True))  # periods not 2
    for kernels, acts in (("reference", list(models.ACTIVATIONS)), ("fused", FUSED)):
        for act in acts:
            scheme, gpas = next(schemes)
            position = next(positions) if gpas and scheme not in POST_STYLE else POSITIONS[0]
            out.append((act, scheme, gpas, position, next(norms), kernels, next(casts)))
    return out


ROWS = rows()


def test_the_rows_cover_every_choice():
    assert {r[0] for r in ROWS} == set(models.ACTIVATIONS)
    assert {(r[1], r[2]) for r in ROWS} == set(SCHEMES)
    assert {r[3] for r in ROWS if r[2] and r[1] not in POST_STYLE} == set(POSITIONS)
    assert {r[4] for r in ROWS} == set(NORM_LAYERS)
    assert {r[0] for r in ROWS if r[5] == "fused"} == set(FUSED)
    assert {r[6] for r in ROWS} == {False, True}


def explain_blocks(model: Transformer, idx: torch.Tensor) -> dict:
    """Block class -> dynamo's explanation of its first call, through the regional-compile hook."""
    seen = {}

    def compiled_block(block):
        def call(*args):
            name = type(block).__name__
            if name not in seen:
                torch._dynamo.reset()
                seen[name] = torch._dynamo.explain(block)(*args)
            return args[0]  # blocks keep their input's shape; running one eagerly would compile its fast path
        return call

    model.compiled_block = compiled_block
    model.train()
    model.features(idx)
    torch._dynamo.reset()
    return seen


def tiny(**kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=64, block_size=8, d_model=32, n_layers=2, n_heads=2,
                                         ref_intermediate_size=88, **kw))


def reasons(explanation) -> list[str]:
    return [str(b.reason).splitlines()[0] for b in explanation.break_reasons]


@pytest.mark.parametrize("act,scheme,gpas,position,norm_layer,kernels,bf16", ROWS,
                         ids=[f"{r[0]}-{r[1]}{'+gpas' if r[2] else ''}-{r[5]}" for r in ROWS])
def test_a_compiled_block_has_no_graph_break(act, scheme, gpas, position, norm_layer, kernels, bf16):
    model = tiny(activation=act, scheme=scheme, gpas=gpas, gpas_position=position, norm_layer=norm_layer,
                 kernels=kernels, mixln_post_fraction=0.5)
    idx = torch.randint(0, 64, (2, 8))
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        explained = explain_blocks(model, idx)
    assert explained, "the regional hook was never called"
    if scheme == "mixln":
        assert len(explained) == 2  # its post and pre blocks both traced
    for name, ex in explained.items():
        assert ex.graph_break_count == 0, f"{name}: {reasons(ex)}"
        assert ex.graph_count == 1


def test_moe_blocks_break_only_where_routing_is_data_dependent():
    """The named exception: an MoE block routes a data-dependent number of tokens to each expert
    (bincount, split by counts), which dynamo cannot trace without dynamic shapes; every break must be
    of that kind, so a new kind of break still fails here."""
    model = tiny(ffn="moe", moe_experts=4, moe_top_k=2, moe_grouped_mm="off")
    (ex,) = explain_blocks(model, torch.randint(0, 64, (2, 8))).values()
    assert ex.graph_break_count > 0  # when this fails, the MoE block compiles whole: move it into ROWS
    for reason in reasons(ex):
        assert reason in ("Dynamic shape operator", "Data dependent operator"), reason
