"""GPAS and the residual/normalization schemes against the GPAS paper's formulas (docs/papers.md).

Block outputs are recomputed here from the formulas with the block's own sub-modules (attention,
FFN) and its norm gains, with an RMSNorm written out again; the GPAS scale 1 - act(a) is
computed with math, not with models.gpas.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from models import GATE_ACTS, GPAS, GPAS_EXTENSIONS, POSITIONS, SCHEMES, Transformer, TransformerConfig
from models.attention import rope_cache
from models.schemes import PostBlock, PreBlock

# ---- helpers ---------------------------------------------------------------------------------------

TINY = dict(vocab_size=64, d_model=32, n_layers=4, n_heads=4, ref_intermediate_size=88, block_size=16)
# init_std 0.1 (not 0.02) so that every sub-layer moves the residual stream visibly: at 0.02 the
# post-LN and Mix-LN logits of this tiny model differ by only ~3e-5
STD = 0.1
GATE = 0.5  # a nonzero GPAS gate: 1 - silu(0.5) = 0.689


def sig(a: float) -> float:
    return 1.0 / (1.0 + math.exp(-a))


# gate activation -> (act(a), d act / da), written out with math
GATE_REF = {
    "silu": (lambda a: a * sig(a), lambda a: sig(a) * (1 + a * (1 - sig(a)))),
    "identity": (lambda a: a, lambda a: 1.0),
    "tanh": (math.tanh, lambda a: 1 - math.tanh(a) ** 2),
    "relu": (lambda a: max(a, 0.0), lambda a: 1.0 if a > 0 else 0.0),
    "leaky_relu": (lambda a: a if a > 0 else 0.01 * a, lambda a: 1.0 if a > 0 else 0.01),
    "silu_beta": (lambda a: a * sig(8 * a), lambda a: sig(8 * a) + 8 * a * sig(8 * a) * (1 - sig(8 * a))),
}


def variants():
    """Every scheme with and without GPAS (+ LNS's second mode): name -> config overrides."""
    out = {}
    for s in SCHEMES:
        for g in (False, True):
            out[s + ("+gpas" if g else "")] = dict(scheme=s, gpas=g)
    out["lns[fixed]"] = dict(scheme="lns", gpas=False, lns_mode="fixed")
    out["lns+gpas[fixed]"] = dict(scheme="lns", gpas=True, lns_mode="fixed")
    return out


VARIANTS = variants()


def cfg_of(**kw) -> TransformerConfig:
    return TransformerConfig(**{**TINY, "init_std": STD, **kw})


def build(meta: bool = False, seed: int = 0, gate: float | None = GATE, **kw) -> Transformer:
    cfg = cfg_of(**kw)
    torch.manual_seed(seed)
    if meta:
        with torch.device("meta"):
            model = Transformer(cfg)
        assert next(model.parameters()).is_meta
        model.to_empty(device="cpu")
        torch.manual_seed(seed)
        model.init_weights()
    else:
        model = Transformer(cfg)
    if gate is not None:
        set_gates(model, gate)
    return model


def set_gates(model: Transformer, value: float) -> None:
    with torch.no_grad():
        for block in model.blocks:
            if block.gpas is not None:
                block.gpas.gate.fill_(value)


def tokens(T: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, TINY["vocab_size"], (2, T), generator=torch.Generator().manual_seed(seed))


def rms(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


# ---- GPAS --------------------------------------------------------------------------------------------


def test_gate_act_registry_is_covered():
    assert set(GATE_ACTS) == set(GATE_REF)


def test_gpas_identity_at_gate_zero():
    g = GPAS()
    assert g.gate.item() == 0.0 and g.gate.shape == ()
    x = torch.randn(3, 5, 8, requires_grad=True)
    y = g(x)
    assert torch.equal(y, x)
    up = torch.randn_like(x)
    y.backward(up)
    assert torch.equal(x.grad, up)


@pytest.mark.parametrize("act", sorted(GATE_ACTS))
@pytest.mark.parametrize("a", [-1.3, -0.2, 0.4, 1.7])
def test_gpas_forward_scale(act, a):
    g = GPAS(act=act).double()
    with torch.no_grad():
        g.gate.fill_(a)
    x = torch.randn(4, 16, dtype=torch.float64)
    s = 1.0 - GATE_REF[act][0](a)
    torch.testing.assert_close(g(x), s * x, rtol=1e-14, atol=0)
    assert g.scale().item() == pytest.approx(s, rel=1e-14)


def test_gpas_silu_beta_uses_beta():
    a = 0.3
    g = GPAS(act="silu_beta", beta=2.0).double()
    with torch.no_grad():
        g.gate.fill_(a)
    x = torch.ones(3, dtype=torch.float64)
    assert torch.allclose(g(x), (1 - a * sig(2.0 * a)) * x, rtol=1e-14)
    assert not torch.allclose(g(x), (1 - a * sig(8.0 * a)) * x, rtol=1e-6)


@pytest.mark.parametrize("act", sorted(GATE_ACTS))
def test_gpas_gradients(act):
    a = 0.7
    g = GPAS(act=act).double()
    with torch.no_grad():
        g.gate.fill_(a)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 16, dtype=torch.float64, generator=gen, requires_grad=True)
    up = torch.randn(4, 16, dtype=torch.float64, generator=gen)
    y = g(x)
    y.backward(up)
    # the Jacobian w.r.t. x is exactly the identity (stop-gradient on the subtracted term)
    assert torch.equal(x.grad, up)
    # gate: d/da [x - act(a) sg(x)] . up = -act'(a) sum(up * x)
    want = -GATE_REF[act][1](a) * (up * x.detach()).sum().item()
    assert g.gate.grad.item() == pytest.approx(want, rel=1e-12)
    # forward is still scaled
    assert torch.allclose(y, (1 - GATE_REF[act][0](a)) * x.detach(), rtol=1e-14)


@pytest.mark.parametrize("act", sorted(GATE_ACTS))
def test_gpas_without_stop_grad(act):
    a = 0.7
    g = GPAS(act=act, stop_grad=False).double()
    with torch.no_grad():
        g.gate.fill_(a)
    x = torch.randn(4, 16, dtype=torch.float64, requires_grad=True)
    up = torch.randn(4, 16, dtype=torch.float64)
    g(x).backward(up)
    s = 1 - GATE_REF[act][0](a)
    torch.testing.assert_close(x.grad, s * up, rtol=1e-13, atol=1e-15)
    assert not torch.allclose(x.grad, up)
    assert g.gate.grad.item() == pytest.approx(-GATE_REF[act][1](a) * (up * x.detach()).sum().item(), rel=1e-12)


def test_gpas_fixed_gate_and_init():
    g = GPAS(learnable=False, init=0.3)
    assert not g.gate.requires_grad and g.gate.item() == pytest.approx(0.3)
    model = Transformer(cfg_of(gpas=True, gpas_learnable=False, gpas_init=0.3))
    gates = [b.gpas.gate for b in model.blocks]
    assert all(not p.requires_grad for p in gates)
    assert all(p.item() == pytest.approx(0.3) for p in gates)


def test_gpas_bad_act_raises():
    with pytest.raises(ValueError, match="silu"):
        GPAS(act="swish")


def test_gpas_parameter_names_and_count():
    model = Transformer(cfg_of(gpas=True))
    names = [n for n, _ in model.named_parameters() if "gpas" in n]
    assert names == [f"blocks.{i}.gpas.gate" for i in range(TINY["n_layers"])]
    assert all(dict(model.named_parameters())[n].shape == () for n in names)
    # one gate per layer, shared by attention and FFN: the same module in both sub-layers
    assert not [n for n, _ in Transformer(cfg_of(gpas=False)).named_parameters() if "gpas" in n]


# ---- every scheme is a different function ----------------------------------------------------------

# LNS 'gain' (1/sqrt(l) folded into the initial norm gains) and 'fixed' (gains 1, times 1/sqrt(l))
# are the same function at init by construction: they differ only once the gains train.
SAME_AT_INIT = {frozenset(("lns", "lns[fixed]")), frozenset(("lns+gpas", "lns+gpas[fixed]"))}


@pytest.mark.parametrize("meta", [False, True], ids=["cpu", "meta"])
def test_every_scheme_gives_a_different_forward(meta):
    idx = tokens()
    outs = {}
    with torch.no_grad():
        for name, kw in VARIANTS.items():
            out = build(meta=meta, **kw)(idx)
            assert torch.isfinite(out).all(), name
            outs[name] = out
    for a, b in itertools.combinations(outs, 2):
        diff = (outs[a] - outs[b]).abs().max().item()
        if frozenset((a, b)) in SAME_AT_INIT:
            assert diff < 1e-5, (a, b, diff)
        else:
            assert diff > 1e-2, f"{a} and {b} give the same forward (max diff {diff:.2e})"


@pytest.mark.parametrize("meta", [False, True], ids=["cpu", "meta"])
@pytest.mark.parametrize("name", sorted(n for n in VARIANTS if "+gpas" not in n))
def test_gpas_at_gate_zero_equals_plain_scheme(name, meta):
    kw = VARIANTS[name]
    plain = build(meta=meta, **kw)
    gpas = build(meta=meta, gate=None, **{**kw, "gpas": True})
    missing, unexpected = gpas.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all("gpas" in k for k in missing)
    assert all(b.gpas.gate.item() == 0.0 for b in gpas.blocks)
    idx = tokens()
    with torch.no_grad():
        assert torch.equal(gpas(idx), plain(idx))
        set_gates(gpas, GATE)
        assert not torch.allclose(gpas(idx), plain(idx), atol=1e-3)


def test_meta_build_initializes_every_parameter():
    """After to_empty the storage is garbage: poison it, init_weights must overwrite all of it."""
    for name, kw in VARIANTS.items():
        for act in ("swiglu", "polynorm", "polyrelu", "prelu"):
            cfg = cfg_of(activation=act, **kw)
            with torch.device("meta"):
                model = Transformer(cfg)
            model.to_empty(device="cpu")
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))
            model.init_weights()
            bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
            assert not bad, (name, act, bad)
            assert not list(model.buffers()), "a buffer would need its own re-init after to_empty"


@pytest.mark.parametrize("meta", [False, True], ids=["cpu", "meta"])
def test_lns_scale_survives_materialization(meta):
    idx = tokens()
    with torch.no_grad():
        pre = build(meta=meta, scheme="pre")(idx)
        for mode in ("gain", "fixed"):
            lns = build(meta=meta, scheme="lns", lns_mode=mode)
            if mode == "gain":
                for l, block in enumerate(lns.blocks, start=1):
                    for norm in block.norms:
                        assert torch.equal(norm.weight, torch.full_like(norm.weight, 1 / math.sqrt(l)))
            assert (lns(idx) - pre).abs().max() > 1e-2, mode


# ---- each block against its formula -----------------------------------------------------------------


def expected_block(block, x, rope, cfg, l):
    """One block's output, recomputed from the GPAS paper's formulas with the block's own f's."""
    L = cfg.n_layers
    N = [lambda h, n=n: rms(h, n.weight) for n in block.norms]
    f = [lambda h: block.attn(h, rope), block.ffn]
    s = 1.0 - GATE_REF[cfg.gpas_act][0](block.gpas.gate.item()) if cfg.gpas else 1.0
    scheme = cfg.scheme
    if scheme == "mixln":
        scheme = "post" if l <= math.floor(L * cfg.mixln_post_fraction) else "pre"
    for i in (0, 1):
        if scheme in ("post", "deepnorm"):
            alpha = (2 * L) ** 0.25 if scheme == "deepnorm" else 1.0
            x = N[i](alpha * s * x + f[i](x))
        else:  # pre-style: GPAS at cfg.gpas_position (models.POSITIONS), identity elsewhere
            assert scheme in ("pre", "sandwich", "lns"), scheme

            def G(h, where):
                return s * h if where == cfg.gpas_position else h

            c = 1 / math.sqrt(l) if scheme == "lns" and cfg.lns_mode == "fixed" else 1.0
            x = G(x, "before_sublayer")
            h = f[i](G(N[i](x), "after_norm") * c)
            if scheme == "sandwich":
                h = N[2 + i](h)
            x = G(x + G(h, "after_fn"), "after_sublayer")
    return x


def block_cases():
    cases = [(name, kw) for name, kw in VARIANTS.items()]
    cases += [(f"pre+gpas@{p}", dict(scheme="pre", gpas=True, gpas_position=p)) for p in POSITIONS
              if p != "after_sublayer"]
    cases += [(f"sandwich+gpas@{p}", dict(scheme="sandwich", gpas=True, gpas_position=p)) for p in POSITIONS
              if p != "after_sublayer"]
    cases += [("mixln@0.5", dict(scheme="mixln", mixln_post_fraction=0.5)),
              ("mixln+gpas@0.5", dict(scheme="mixln", gpas=True, mixln_post_fraction=0.5)),
              ("pre+gpas[tanh]", dict(scheme="pre", gpas=True, gpas_act="tanh"))]
    return cases


@pytest.mark.parametrize("name,kw", block_cases(), ids=[c[0] for c in block_cases()])
def test_block_matches_formula(name, kw):
    model = build(**kw)
    cfg = model.cfg
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        # distinct, non-unit gains so a norm used in the wrong place shows up; distinct gates
        for block in model.blocks:
            for norm in block.norms:
                norm.weight.mul_(1 + 0.3 * torch.randn(norm.weight.shape, generator=gen))
            if block.gpas is not None:
                block.gpas.gate.fill_(0.2 + 0.15 * block.layer)
        T = 10
        rope = rope_cache(T, cfg.head_dim, cfg.rope_base, "cpu")
        x = torch.randn(2, T, cfg.d_model, generator=gen)
        for l, block in enumerate(model.blocks, start=1):
            assert block.layer == l
            got = block(x, rope)
            want = expected_block(block, x, rope, cfg, l)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=f"{name} layer {l}")


def test_deepnorm_alpha_value():
    # the formula test above uses (2L)^(1/4) for DeepNorm; check it against a wrong alpha too
    model = build(scheme="deepnorm", n_layers=6)
    block = model.blocks[2]
    rope = rope_cache(5, model.cfg.head_dim, model.cfg.rope_base, "cpu")
    x = torch.randn(1, 5, 32)
    with torch.no_grad():
        got = block.residual(x, lambda h: block.attn(h, rope), 0)
        for alpha, ok in ((12 ** 0.25, True), (1.0, False), (12 ** 0.5, False)):
            want = rms(alpha * x + block.attn(x, rope), block.norms[0].weight)
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-5) == ok, alpha


# ---- DeepNorm init ------------------------------------------------------------------------------------

BIG = dict(vocab_size=64, d_model=256, n_layers=2, n_heads=4, ref_intermediate_size=688)


def xavier_std(lin, gain):
    fan_out, fan_in = lin.weight.shape
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


@pytest.mark.parametrize("gpas", [False, True])
@pytest.mark.parametrize("mode", ["all", "reference", "off"])
@pytest.mark.parametrize("activation", ["swiglu", "gelu"])
def test_deepnorm_init(mode, gpas, activation):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(**BIG, scheme="deepnorm", gpas=gpas, deepnorm_init=mode,
                                          activation=activation))
    L = BIG["n_layers"]
    beta = (8 * L) ** -0.25
    applied = mode == "all" or (mode == "reference" and not gpas)
    for block in model.blocks:
        a, f = block.attn, block.ffn
        lins = {"q": (a.q, 1.0), "k": (a.k, 1.0), "v": (a.v, beta), "o": (a.o, beta), "up": (f.up, beta),
                "down": (f.down, beta)}
        if activation == "swiglu":
            lins["gate"] = (f.gate, beta)
        for name, (lin, gain) in lins.items():
            want = xavier_std(lin, gain) if applied else 0.02
            got = lin.weight.std().item()
            # >= 65k samples: the std estimate is within ~1% (4 sigma)
            assert got == pytest.approx(want, rel=0.04), (mode, gpas, name, got, want)
            assert abs(lin.weight.mean().item()) < 0.1 * want
    # the embedding and head keep the plain init
    assert model.lm_head.weight.std().item() == pytest.approx(0.02, rel=0.04)


def test_deepnorm_init_only_for_deepnorm():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(**BIG, scheme="post"))
    for block in model.blocks:
        for lin in (block.attn.q, block.attn.v, block.ffn.down):
            assert lin.weight.std().item() == pytest.approx(0.02, rel=0.04)


# ---- LNS, Mix-LN, Sandwich, Post+GPAS --------------------------------------------------------------


@pytest.mark.parametrize("gpas", [False, True])
def test_lns_gain_and_fixed_init(gpas):
    n = 5
    gain = Transformer(cfg_of(scheme="lns", n_layers=n, gpas=gpas, lns_mode="gain"))
    fixed = Transformer(cfg_of(scheme="lns", n_layers=n, gpas=gpas, lns_mode="fixed"))
    for l in range(1, n + 1):
        for norm in gain.blocks[l - 1].norms:
            assert torch.allclose(norm.weight, torch.full((32,), 1 / math.sqrt(l)), rtol=1e-7, atol=0)
            assert norm.weight.requires_grad
        for norm in fixed.blocks[l - 1].norms:
            assert torch.equal(norm.weight.detach(), torch.ones(32))
    assert torch.equal(gain.norm.weight.detach(), torch.ones(32))  # the final norm is not scaled
    # the same weights loaded into 'fixed' apply 1/sqrt(l) on top of them: different function
    fixed.load_state_dict(gain.state_dict())
    set_gates(fixed, GATE)
    set_gates(gain, GATE)
    with torch.no_grad():
        assert (fixed(tokens()) - gain(tokens())).abs().max() > 1e-2


@pytest.mark.parametrize("n_layers,fraction", [(4, None), (8, None), (7, None), (3, None), (8, 0.5), (6, 0.0),
                                                (5, 1.0), (10, 0.3)])
@pytest.mark.parametrize("gpas", [False, True])
def test_mixln_layer_split(n_layers, fraction, gpas):
    kw = {} if fraction is None else {"mixln_post_fraction": fraction}
    model = Transformer(cfg_of(scheme="mixln", n_layers=n_layers, gpas=gpas, **kw))
    n_post = math.floor(n_layers * (0.25 if fraction is None else fraction))
    kinds = [type(b) for b in model.blocks]
    assert kinds == [PostBlock] * n_post + [PreBlock] * (n_layers - n_post)


def test_mixln_default_fraction():
    assert TransformerConfig().mixln_post_fraction == 0.25
    with pytest.raises(ValueError):
        cfg_of(scheme="mixln", mixln_post_fraction=1.5)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_norms_per_layer(name):
    model = build(**VARIANTS[name])
    want = 4 if VARIANTS[name]["scheme"] == "sandwich" else 2
    assert all(len(b.norms) == want for b in model.blocks)
    n_norm_weights = sum(1 for n, _ in model.named_parameters() if "norm" in n)
    assert n_norm_weights == TINY["n_layers"] * want + 1  # + the final norm


def test_post_gpas_is_a_marked_extension():
    assert "post" in GPAS_EXTENSIONS
    assert not (set(GPAS_EXTENSIONS) - set(SCHEMES))
    model = build(scheme="post", gpas=True)
    out = model(tokens())
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(b.gpas.gate.grad is not None and b.gpas.gate.grad != 0 for b in model.blocks)


# ---- GPAS positions ----------------------------------------------------------------------------------


def test_gpas_positions_differ():
    idx = tokens()
    with torch.no_grad():
        outs = {p: build(scheme="pre", gpas=True, gpas_position=p)(idx) for p in POSITIONS}
    assert set(outs) >= {"after_sublayer", "before_sublayer", "after_norm", "after_fn"}
    for a, b in itertools.combinations(outs, 2):
        assert (outs[a] - outs[b]).abs().max() > 1e-2, (a, b)
    with torch.no_grad():
        # ... and at gate 0 every position is the identity, the same as plain pre
        plain = build(scheme="pre")(idx)
        for p in POSITIONS:
            assert torch.equal(build(scheme="pre", gpas=True, gpas_position=p, gate=0.0)(idx), plain), p


@pytest.mark.parametrize("scheme", ["post", "deepnorm"])
@pytest.mark.parametrize("position", [p for p in POSITIONS if p != "after_sublayer"])
def test_gpas_position_rejected_for_shortcut_schemes(scheme, position):
    with pytest.raises(ValueError, match="after_sublayer"):
        cfg_of(scheme=scheme, gpas=True, gpas_position=position)
    cfg_of(scheme=scheme, gpas=False, gpas_position=position)  # irrelevant without GPAS: accepted
    cfg_of(scheme=scheme, gpas=True)


def test_unknown_position_raises():
    with pytest.raises(ValueError, match="after_sublayer"):
        cfg_of(gpas=True, gpas_position="after_attn")


# ---- model-level properties -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_causality(name):
    model = build(**VARIANTS[name])
    idx = tokens(T=12)
    idx2 = idx.clone()
    t = 7
    idx2[:, t] = (idx[:, t] + 1) % TINY["vocab_size"]
    with torch.no_grad():
        a, b = model(idx), model(idx2)
    torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=1e-6)
    assert (a[:, t:] - b[:, t:]).abs().amax(-1).min() > 0  # every later position sees the change


def test_gqa_fewer_params_and_equals_repeated_kv_mha():
    torch.manual_seed(0)
    gqa = Transformer(cfg_of(n_kv_heads=2))
    mha = Transformer(cfg_of())
    n_gqa = sum(p.numel() for p in gqa.parameters())
    n_mha = sum(p.numel() for p in mha.parameters())
    hd, d, L = 8, 32, TINY["n_layers"]
    assert n_mha - n_gqa == L * 2 * d * (4 - 2) * hd
    assert gqa.blocks[0].attn.k.weight.shape == (2 * hd, d)
    # GQA == MHA whose k/v heads repeat each kv head for its group of query heads
    state = gqa.state_dict()
    for k, v in list(state.items()):
        if k.endswith(("attn.k.weight", "attn.v.weight")):
            state[k] = v.view(2, hd, d).repeat_interleave(2, dim=0).reshape(4 * hd, d)
    mha.load_state_dict(state)
    idx = tokens()
    with torch.no_grad():
        torch.testing.assert_close(gqa(idx), mha(idx), rtol=1e-5, atol=1e-5)


def test_gqa_bad_heads_raise():
    with pytest.raises(ValueError):
        cfg_of(n_kv_heads=3)


def test_scaled_embed():
    kw = dict(vocab_size=2048, d_model=32, n_layers=1, n_heads=4, ref_intermediate_size=88)
    torch.manual_seed(0)
    scaled = Transformer(TransformerConfig(**kw, scaled_embed=True))
    plain = Transformer(TransformerConfig(**kw))
    # 65536 samples: std estimate within ~1.2% (4 sigma)
    assert scaled.embed.weight.std().item() == pytest.approx(math.sqrt(2 / 5), rel=0.02)
    assert plain.embed.weight.std().item() == pytest.approx(0.02, rel=0.02)
    # no forward multiplier: the residual stream starts at the embedding rows themselves
    idx = torch.randint(0, 2048, (2, 9))
    with torch.no_grad():
        _, hidden = scaled(idx, return_hidden=True)
    assert torch.equal(hidden[0], scaled.embed.weight[idx])
