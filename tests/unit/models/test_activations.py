"""FFN activations against independent re-computations of the papers' formulas (docs/papers.md).

The expected values are written again here in float64 numpy/math from the formulas, never by
calling back into models/. Every activation in models.ACTIVATIONS must have an entry in REF
below, so a newly registered activation fails until someone writes its formula down.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from models import ACTIVATIONS, Transformer, TransformerConfig, build_activation, build_ffn
from models.activations import PolyNorm, PolyReLU, PowLU, SwiGLUClip, polynorm, powlu_gate

# ---- independent float64 formulas ---------------------------------------------------------------

_erf = np.vectorize(math.erf)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def silu(x):
    return x * sigmoid(x)


def gelu_exact(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def softplus(x):
    return np.log1p(np.exp(x))


def relu(x):
    return np.maximum(x, 0.0)


def poly_relu_np(x, w, b):
    """w[0] relu^r + ... + w[r-1] relu + b."""
    r = len(w)
    return sum(w[i] * relu(x) ** (r - i) for i in range(r)) + b


def poly_norm_np(x, w, b, form="rms", eps=1e-6):
    """sum_i w[i] N(x^(r-i)) + b, N over the last axis (RMS or L2)."""
    r = len(w)
    out = np.full_like(x, b, dtype=np.float64)
    for i in range(r):
        p = x ** (r - i)
        ss = (p**2).mean(-1, keepdims=True) if form == "rms" else (p**2).sum(-1, keepdims=True)
        out = out + w[i] * p / np.sqrt(ss + eps)
    return out


def powlu_np(z, m=3.0):
    """z^(m/(sqrt z + 1)) * sigmoid(z) for z > 0, silu(z) for z <= 0."""
    z = np.asarray(z, dtype=np.float64)
    zp = np.where(z > 0, z, 1.0)
    return np.where(z > 0, zp ** (m / (np.sqrt(zp) + 1.0)) * sigmoid(z), silu(z))


def clip_np(g, u, variant, L):
    uc = np.clip(u, -L, L)
    if variant == "input":
        return silu(np.minimum(g, L)) * uc
    if variant == "output":
        return np.minimum(silu(g), L) * uc
    if variant == "gptoss":
        gc = np.minimum(g, L)
        return gc * sigmoid(1.702 * gc) * (uc + 1.0)
    raise AssertionError(variant)


THIRD = float(np.float32(1 / 3))  # the fp32 parameter's value of the default coefficient 1/3

# name -> ("pointwise", f(x)) | ("gated", f(g, u)) | ("rowwise", f(x)) for the default options
REF = {
    "relu": ("pointwise", relu),
    "relu2": ("pointwise", lambda x: relu(x) ** 2),
    "gelu": ("pointwise", gelu_exact),
    "silu": ("pointwise", silu),
    "relu6": ("pointwise", lambda x: np.minimum(relu(x), 6.0)),
    "leaky_relu": ("pointwise", lambda x: np.where(x > 0, x, 0.01 * x)),
    "prelu": ("pointwise", lambda x: np.where(x > 0, x, 0.25 * x)),
    "rrelu": ("pointwise", lambda x: np.where(x >= 0, x, (1 / 8 + 1 / 3) / 2 * x)),  # eval mode: the mean slope
    "mish": ("pointwise", lambda x: x * np.tanh(softplus(x))),
    "elu": ("pointwise", lambda x: np.where(x > 0, x, np.expm1(x))),
    "celu": ("pointwise", lambda x: relu(x) + np.minimum(0.0, np.expm1(x))),  # alpha = 1
    "softplus": ("pointwise", softplus),
    "tanh": ("pointwise", np.tanh),
    "sigmoid": ("pointwise", sigmoid),
    "polyrelu": ("pointwise", lambda x: poly_relu_np(x, [THIRD] * 3, 0.0)),
    "polynorm": ("rowwise", lambda x: poly_norm_np(x, [THIRD] * 3, 0.0)),
    "swiglu": ("gated", lambda g, u: silu(g) * u),
    "geglu": ("gated", lambda g, u: gelu_exact(g) * u),
    "reglu": ("gated", lambda g, u: relu(g) * u),
    "swiglu_clip": ("gated", lambda g, u: clip_np(g, u, "input", 7.0)),
    "powlu": ("gated", lambda g, u: powlu_np(g, 3.0) * u),
}

GATED = {"swiglu", "geglu", "reglu", "swiglu_clip", "powlu"}  # three matrices (PolyCom section 4)


def ref_or_fail(name):
    if name not in REF:
        pytest.fail(f"activation {name!r} is registered but has no independent formula in "
                    "tests/unit/models/test_activations.py")
    return REF[name]


def pre_activations(seed=0, shape=(6, 48), scale=4.0):
    """float64 inputs spanning roughly [-15, 15], plus exact edge values in the first row."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
    edge = torch.tensor([0.0, -0.0, 1.0, -1.0, 6.0, 7.0, -7.0, 7.5, -7.5, 12.0, -12.0, 20.0], dtype=torch.float64)
    x[0, : edge.numel()] = edge
    return x


# ---- the registry --------------------------------------------------------------------------------


def test_every_registered_activation_has_a_reference_formula():
    missing = sorted(set(ACTIVATIONS) - set(REF))
    assert not missing, f"no independent formula for {missing}"


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_gated_flag_and_ffn_matrices(name):
    kind, _ = ref_or_fail(name)
    ffn = build_ffn(name, 8, 16)
    assert ffn.act.gated == (kind == "gated") == (name in GATED)
    assert hasattr(ffn, "gate") == (name in GATED)
    assert ffn.up.weight.shape == (16, 8) and ffn.down.weight.shape == (8, 16)
    assert ffn.up.bias is None and ffn.down.bias is None
    n_mats = 3 if name in GATED else 2
    assert sum(p.numel() for n, p in ffn.named_parameters() if not n.startswith("act.")) == n_mats * 8 * 16


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_module_matches_formula(name):
    kind, f = ref_or_fail(name)
    act = build_activation(name).double().eval()  # eval: rrelu's slope is random only in training
    if kind == "gated":
        g, u = pre_activations(0), pre_activations(1)
        got = act(g, u)
        want = f(g.numpy(), u.numpy())
    else:
        x = pre_activations(0)
        got = act(x)
        want = f(x.numpy())
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_ffn_matches_formula_with_known_weights(name):
    """The whole FFN, down(act(up x)) or down(act(gate x, up x)), in float32 against float64."""
    kind, f = ref_or_fail(name)
    d, h = 8, 24
    ffn = build_ffn(name, d, h).eval()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for lin in (ffn.up, ffn.down) + ((ffn.gate,) if ffn.gated else ()):
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) * 0.8)
    x = torch.randn(5, d, generator=gen) * 1.5
    got = ffn(x)
    X = x.double().numpy()
    up = X @ ffn.up.weight.detach().double().numpy().T
    if kind == "gated":
        gate = X @ ffn.gate.weight.detach().double().numpy().T
        mid = f(gate, up)
    else:
        mid = f(up)
    want = mid @ ffn.down.weight.detach().double().numpy().T
    assert got.shape == (5, d) and got.dtype == torch.float32
    np.testing.assert_allclose(got.detach().double().numpy(), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


def test_rrelu_random_slope_in_training_mean_slope_in_eval():
    """Training: each negative element gets its own slope a ~ U(1/8, 1/3) (and the gradient is that a);
    eval: the fixed mean slope 11/48 everywhere. Positive inputs pass unchanged in both modes."""
    act = build_activation("rrelu")
    lo, hi = 1 / 8, 1 / 3
    torch.manual_seed(0)
    x = -torch.rand(200_000, dtype=torch.float64) - 0.5  # all negative, away from 0
    x.requires_grad_(True)
    y = act.train()(x)
    slope = (y / x).detach()
    assert slope.min() >= lo and slope.max() <= hi
    assert abs(slope.mean().item() - (lo + hi) / 2) < 2e-3  # uniform: mean (lo+hi)/2, std (hi-lo)/sqrt(12)/sqrt(n)
    assert abs(slope.std().item() - (hi - lo) / math.sqrt(12)) < 2e-3
    assert len(torch.unique(slope)) > 100_000  # per element, not one slope per call
    assert not torch.equal(act(x.detach()), y.detach())  # a fresh draw every forward
    y.sum().backward()
    torch.testing.assert_close(x.grad, slope, rtol=1e-12, atol=0)
    pos = torch.rand(100, dtype=torch.float64) + 0.1
    assert torch.equal(act(pos), pos) and torch.equal(act.eval()(pos), pos)
    with torch.no_grad():
        torch.testing.assert_close(act.eval()(x), x * (lo + hi) / 2, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name,fn", [("gelu", gelu_tanh), ("geglu", None)])
def test_gelu_tanh_option(name, fn):
    x = pre_activations(0)
    u = pre_activations(1)
    exact, approx = build_activation(name), build_activation(name, approximate="tanh")
    args = (x,) if name == "gelu" else (x, u)
    want = gelu_tanh(x.numpy()) * (1.0 if name == "gelu" else u.numpy())
    np.testing.assert_allclose(approx(*args).numpy(), want, rtol=1e-10, atol=1e-10)
    # the option matters: exact and tanh GELU differ by up to ~1e-3 around |x| ~ 2
    assert (exact(*args) - approx(*args)).abs().max() > 1e-5


def test_gelu_bad_approximation_raises():
    with pytest.raises(ValueError, match="tanh"):
        build_activation("gelu", approximate="fast")


def test_unknown_option_is_rejected():
    with pytest.raises(TypeError, match="limit"):
        build_ffn("relu", 8, 16, limit=3.0)


def test_leaky_relu_slope_and_prelu_init():
    x = torch.tensor([-2.0, -0.5, 0.0, 3.0], dtype=torch.float64)
    assert torch.allclose(build_activation("leaky_relu")(x),
                          torch.tensor([-0.02, -0.005, 0.0, 3.0], dtype=torch.float64))
    prelu = build_activation("prelu")
    params = dict(prelu.named_parameters())
    assert list(params) == ["weight"] and params["weight"].shape == (1,)
    assert params["weight"].item() == 0.25 and params["weight"].requires_grad
    with torch.no_grad():
        prelu.weight.fill_(-0.7)  # learnable: the forward uses the parameter
    assert torch.allclose(prelu(x.float()), torch.tensor([1.4, 0.35, 0.0, 3.0]))


def test_config_options_reach_the_activation():
    base = dict(vocab_size=16, d_model=16, n_layers=1, n_heads=2, ref_intermediate_size=32)
    cases = [
        (dict(activation="gelu", gelu_approximate="tanh"), {"approximate": "tanh"}),
        (dict(activation="geglu", gelu_approximate="tanh"), {"approximate": "tanh"}),
        (dict(activation="swiglu_clip", clip_limit=3.5, clip_variant="gptoss"), {"limit": 3.5, "variant": "gptoss"}),
        (dict(activation="polyrelu", poly_order=4), {"order": 4}),
        (dict(activation="polynorm", poly_order=2, polynorm_form="l2", polynorm_recompute=False),
         {"order": 2, "form": "l2", "recompute": False}),
        (dict(activation="powlu", powlu_m=2.5), {"m": 2.5}),
    ]
    for kw, attrs in cases:
        act = Transformer(TransformerConfig(**base, **kw)).blocks[0].ffn.act
        for k, v in attrs.items():
            assert getattr(act, k) == v, (kw, k)


# ---- PolyReLU ------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [2, 3, 4])
def test_polyrelu_init(order):
    act = PolyReLU(order)
    assert act.weight.shape == (order,)
    assert torch.equal(act.weight.detach(), torch.full((order,), 1.0 / order))
    assert act.bias.numel() == 1 and act.bias.item() == 0.0
    assert build_activation("polyrelu", order=order).weight.shape == (order,)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_polyrelu_formula_and_power_order(order):
    x = pre_activations(0, scale=2.0)
    r = x.clamp(min=0)
    act = PolyReLU(order).double()
    with torch.no_grad():
        # (0, ..., 0, 1): plain ReLU
        act.weight.zero_()
        act.weight[-1] = 1.0
        assert torch.equal(act(x), r)
        # the coefficient of r^2 is weight[order - 2]: squared ReLU
        act.weight.zero_()
        act.weight[order - 2] = 1.0
        assert torch.allclose(act(x), r**2, rtol=1e-12, atol=0)
        # weight[0] multiplies the highest power
        act.weight.zero_()
        act.weight[0] = 1.0
        assert torch.allclose(act(x), r**order, rtol=1e-12, atol=0)
        # arbitrary coefficients and bias
        w = torch.linspace(-0.9, 1.3, order, dtype=torch.float64)
        act.weight.copy_(w)
        act.bias.fill_(0.37)
    np.testing.assert_allclose(act(x).detach().numpy(), poly_relu_np(x.numpy(), w.tolist(), 0.37), rtol=1e-12)


@pytest.mark.parametrize("order", [1, 5])
def test_polyrelu_bad_order_raises(order):
    with pytest.raises(ValueError):
        PolyReLU(order)


# ---- PolyNorm ------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [2, 3, 4])
def test_polynorm_init(order):
    act = PolyNorm(order)
    assert act.weight.shape == (order,)
    assert torch.equal(act.weight.detach(), torch.full((order,), 1.0 / order))
    assert act.bias.numel() == 1 and act.bias.item() == 0.0


@pytest.mark.parametrize("form", ["rms", "l2"])
@pytest.mark.parametrize("order", [2, 3, 4])
def test_polynorm_formula(order, form):
    x = pre_activations(2, shape=(5, 40), scale=1.5)
    w = torch.linspace(0.8, -0.4, order, dtype=torch.float64)
    act = PolyNorm(order, form=form).double()
    with torch.no_grad():
        act.weight.copy_(w)
        act.bias.fill_(-0.25)
    want = poly_norm_np(x.numpy(), w.tolist(), -0.25, form)
    np.testing.assert_allclose(act(x).detach().numpy(), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(polynorm(x, act.weight, act.bias, form).detach().numpy(), want, rtol=1e-10, atol=1e-12)
    # float32 path too (computed in fp32), looser tolerance
    got32 = PolyNorm(order, form=form)
    with torch.no_grad():
        got32.weight.copy_(w.float())
        got32.bias.fill_(-0.25)
    np.testing.assert_allclose(got32(x.float()).detach().double().numpy(), want, rtol=1e-4, atol=1e-5)


def test_polynorm_rms_form_is_not_centered_and_has_no_gain():
    # a constant row: RMS normalization maps c to sign(c) * (almost) 1 per term; LayerNorm would give 0
    x = torch.full((1, 16), 3.0, dtype=torch.float64)
    act = PolyNorm().double()
    want = THIRD * (27 / math.sqrt(27**2 + 1e-6) + 9 / math.sqrt(9**2 + 1e-6) + 3 / math.sqrt(3**2 + 1e-6))
    assert torch.allclose(act(x), torch.full_like(x, want), rtol=1e-12, atol=0)


@pytest.mark.parametrize("h", [16, 256])
def test_polynorm_l2_form_is_sqrt_h_smaller(h):
    x = pre_activations(4, shape=(3, h), scale=1.0)
    rms = PolyNorm(form="rms").double()
    l2 = PolyNorm(form="l2").double()
    with torch.no_grad():
        for a in (rms, l2):
            a.weight.copy_(torch.tensor([0.5, -1.2, 0.9], dtype=torch.float64))  # bias stays 0
    # equal up to eps: sqrt(sum + h eps) vs sqrt(sum + eps), relative ~ h eps / sum ~ 1e-6
    # (atol for elements where the weighted terms cancel to ~0)
    torch.testing.assert_close(rms(x), math.sqrt(h) * l2(x), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(rms(x), l2(x), rtol=0.1)


def test_polynorm_bad_form_raises():
    with pytest.raises(ValueError, match="rms"):
        PolyNorm(form="layer")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_polynorm_low_precision_large_inputs(dtype):
    """Computed in fp32 and returned in the input dtype; finite where x^6 overflows fp16."""
    gen = torch.Generator().manual_seed(5)
    mag = torch.empty(4, 64).uniform_(100.0, 1000.0, generator=gen)
    sign = torch.where(torch.rand(4, 64, generator=gen) < 0.5, -1.0, 1.0)
    x = (mag * sign).to(dtype)
    # sanity of the test input: computed in fp16, mean(x^6) is inf (and x^3 already overflows)
    assert torch.isinf((x.half() ** 6).mean(-1)).all()
    act = PolyNorm()
    with torch.no_grad():
        act.weight.copy_(torch.tensor([0.5, 0.3, 0.2]))
        act.bias.fill_(0.1)
    y = act(x).detach()
    assert y.dtype == dtype
    assert torch.isfinite(y).all()
    want = poly_norm_np(x.double().numpy(), [0.5, 0.3, 0.2], 0.1)
    # one rounding to the output dtype: bf16 has 8 bits of mantissa, fp16 11
    tol = 1e-2 if dtype == torch.bfloat16 else 2e-3
    np.testing.assert_allclose(y.double().numpy(), want, rtol=tol, atol=tol)
    # the gradient stays finite too
    xg = x.clone().requires_grad_()
    act(xg).float().square().sum().backward()
    assert torch.isfinite(xg.grad.float()).all() and torch.isfinite(act.weight.grad).all()


def _run(act, x, upstream):
    x = x.clone().requires_grad_()
    act.zero_grad()
    y = act(x)
    y.backward(upstream)
    return y.detach(), x.grad, act.weight.grad.clone(), act.bias.grad.clone()


@pytest.mark.parametrize("form", ["rms", "l2"])
def test_polynorm_recompute_identical_outputs_and_grads(form):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(8, 64, generator=gen)
    up = torch.randn(8, 64, generator=gen)
    a, b = PolyNorm(form=form, recompute=True), PolyNorm(form=form, recompute=False)
    with torch.no_grad():
        for m in (a, b):
            m.weight.copy_(torch.tensor([0.4, -0.3, 0.9]))
            m.bias.fill_(0.2)
    for ra, rb in zip(_run(a, x, up), _run(b, x, up)):
        assert torch.equal(ra, rb)


def _saved_bytes(module, x):
    """Bytes of distinct storages autograd keeps for backward of module(x)."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = module(x)
    return y, sum(storages.values())


def test_polynorm_recompute_saves_less_for_backward():
    x = torch.randn(32, 512, requires_grad=True)
    y_re, saved_re = _saved_bytes(PolyNorm(recompute=True), x)
    y_plain, saved_plain = _saved_bytes(PolyNorm(recompute=False), x)
    assert torch.equal(y_re, y_plain)
    # recompute keeps x (and the 4 scalars) only; the plain path keeps x^2, x^3, their norms ...
    assert saved_re <= x.nbytes + 64
    assert saved_plain > 2 * x.nbytes
    assert saved_re < 0.5 * saved_plain


def test_polynorm_recompute_not_used_without_grad():
    act = PolyNorm(recompute=True)
    x = torch.randn(4, 32)
    with torch.no_grad():
        y = act(x)
    assert not y.requires_grad
    assert torch.equal(y, PolyNorm(recompute=False)(x).detach())


@pytest.mark.parametrize("form", ["rms", "l2"])
@pytest.mark.parametrize("order", [2, 3])
def test_polynorm_gradcheck_function(order, form):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(3, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(order, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: polynorm(x, w, b, form), (x, w, b))


def test_polynorm_gradcheck_checkpointed_module():
    act = PolyNorm(recompute=True).double()
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(3, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.05], dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        assert torch.is_grad_enabled()  # so the checkpoint path is the one checked
        return functional_call(act, {"weight": w, "bias": b}, (x,))

    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


# ---- PowLU ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [3.0, 1.0, 2.5, 7.0])
def test_powlu_gate_formula(m):
    z = torch.cat([torch.linspace(-30, 60, 901, dtype=torch.float64), torch.tensor([0.0, 1e-8, 1e4])])
    np.testing.assert_allclose(powlu_gate(z, m).numpy(), powlu_np(z.numpy(), m), rtol=1e-12, atol=1e-300)


def test_powlu_gate_negative_side_is_silu():
    z = torch.linspace(-40, 0, 401, dtype=torch.float64)
    np.testing.assert_allclose(powlu_gate(z).numpy(), silu(z.numpy()), rtol=1e-13, atol=0)


def test_powlu_gate_peak():
    z = torch.arange(0.01, 100.0, 0.001, dtype=torch.float64)
    g = powlu_gate(z, 3.0)
    i = int(g.argmax())
    assert abs(g[i].item() - 5.32) < 0.01
    assert abs(z[i].item() - 12.9) < 0.1
    assert 0 < i < len(z) - 1  # an interior maximum, not the grid's edge


def test_powlu_gate_decays_to_one():
    z = torch.tensor([12.9, 100.0, 1e3, 1e4, 1e6, 1e8], dtype=torch.float64)
    g = powlu_gate(z)
    assert (g[1:] < g[:-1]).all()  # decreasing after the peak
    assert (g > 1).all()
    assert abs(g[-1].item() - 1.0) < 0.01
    assert abs(powlu_gate(torch.tensor([1e8])).item() - 1.0) < 0.01  # fp32 as well


@pytest.mark.parametrize("m", [1.0, 3.0, 5.0, 10.0])
def test_powlu_x_times_gate_monotone(m):
    x = torch.cat([torch.linspace(1e-6, 50, 200001, dtype=torch.float64),
                   torch.logspace(math.log10(50), 6, 20001, dtype=torch.float64)[1:]])
    y = x * powlu_gate(x, m)
    assert (torch.diff(y) > 0).all()


@pytest.mark.parametrize("m", [3.0, 2.5, 5.0])
def test_powlu_equals_silu_at_one_and_m_minus_one_squared(m):
    for z0 in (1.0, (m - 1.0) ** 2):
        z = torch.tensor([z0], dtype=torch.float64)
        assert torch.allclose(powlu_gate(z, m), z * torch.sigmoid(z), rtol=1e-14, atol=0), z0
    # and not elsewhere (the check above can fail)
    z = torch.tensor([0.5 * (1.0 + (m - 1.0) ** 2) + 0.3], dtype=torch.float64)
    assert not torch.allclose(powlu_gate(z, m), z * torch.sigmoid(z), rtol=1e-3)


def test_powlu_gradients_finite_everywhere():
    z = torch.tensor([-1e4, -50.0, -3.0, -1e-30, -0.0, 0.0, 1e-30, 1e-12, 1e-3, 0.5, 1.0, 4.0, 12.9, 1e3, 1e7],
                     requires_grad=True)
    powlu_gate(z).sum().backward()
    assert torch.isfinite(z.grad).all()
    # at z <= 0 the gradient is SiLU's: at 0 exactly sigmoid(0) = 0.5
    assert z.grad[5].item() == pytest.approx(0.5)
    assert z.grad[4].item() == pytest.approx(0.5)
    # PowLU module (gate and up), bf16 and fp32
    for dtype in (torch.float32, torch.bfloat16):
        g = z.detach().to(dtype).requires_grad_()
        u = torch.linspace(-2, 2, z.numel()).to(dtype).requires_grad_()
        PowLU()(g, u).float().sum().backward()
        assert torch.isfinite(g.grad.float()).all() and torch.isfinite(u.grad.float()).all()


def test_powlu_gradcheck_away_from_kink():
    # g has a kink at 0 (left derivative 0.5, right 0); elsewhere it is smooth
    z = torch.tensor([-6.0, -1.0, -0.2, 0.3, 1.0, 3.7, 12.0, 40.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: powlu_gate(z, 3.0), (z,))
    g = z.detach().clone().requires_grad_()
    u = torch.linspace(-1, 2, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(PowLU(), (g, u))


def test_powlu_low_precision_returns_input_dtype():
    g = torch.linspace(-20, 60, 257).to(torch.bfloat16)
    u = torch.linspace(3, -3, 257).to(torch.bfloat16)
    y = PowLU()(g, u)
    assert y.dtype == torch.bfloat16
    want = powlu_np(g.double().numpy()) * u.double().numpy()
    np.testing.assert_allclose(y.double().numpy(), want, rtol=1e-2, atol=1e-2)
    assert powlu_gate(g).dtype == torch.float32  # the gate itself is computed in fp32
    assert PowLU()(g.half(), u.half()).dtype == torch.float16


@pytest.mark.parametrize("m", [0.0, -1.0, 10.0, 12.0])
def test_powlu_m_out_of_range_raises(m):
    with pytest.raises(ValueError):
        PowLU(m)
    with pytest.raises(ValueError):
        build_ffn("powlu", 8, 16, m=m)
    with pytest.raises(ValueError):
        TransformerConfig(activation="powlu", powlu_m=m)


def test_powlu_module_default_m():
    assert PowLU().m == 3.0 and build_activation("powlu").m == 3.0


# ---- swiglu_clip ---------------------------------------------------------------------------------


def _clip_inputs():
    g = torch.linspace(-20, 20, 321, dtype=torch.float64)
    u = torch.linspace(15, -15, 321, dtype=torch.float64)
    return g, u


@pytest.mark.parametrize("limit", [None, 7.0, 3.5, 12.0])
@pytest.mark.parametrize("variant", ["input", "output", "gptoss"])
def test_swiglu_clip_variants(variant, limit):
    g, u = _clip_inputs()
    L = 7.0 if limit is None else limit
    assert (g > L).any() and (g < -L).any() and (u > L).any() and (u < -L).any()
    kw = {"variant": variant} if limit is None else {"variant": variant, "limit": limit}
    act = build_activation("swiglu_clip", **kw)
    assert act.limit == L
    np.testing.assert_allclose(act(g, u).numpy(), clip_np(g.numpy(), u.numpy(), variant, L), rtol=1e-12, atol=1e-12)


def test_swiglu_clip_defaults_and_variants_differ():
    act = SwiGLUClip()
    assert act.limit == 7.0 and act.variant == "input"
    g, u = _clip_inputs()
    outs = {v: SwiGLUClip(variant=v)(g, u) for v in ("input", "output", "gptoss")}
    for a in outs:
        for b in outs:
            if a < b:
                assert not torch.allclose(outs[a], outs[b]), (a, b)
    # and clipping changes swiglu beyond the limit
    assert not torch.allclose(outs["input"], torch.nn.functional.silu(g) * u)


def test_swiglu_clip_bad_variant_names_choices():
    with pytest.raises(ValueError) as e:
        SwiGLUClip(variant="clamp")
    msg = str(e.value)
    assert "clamp" in msg
    for v in ("input", "output", "gptoss"):
        assert v in msg
    with pytest.raises(ValueError):
        TransformerConfig(activation="swiglu_clip", clip_variant="clamp")


@pytest.mark.parametrize("limit", [0.0, -1.0])
def test_swiglu_clip_bad_limit(limit):
    with pytest.raises(ValueError):
        SwiGLUClip(limit=limit)
