"""Mixture-of-experts FFNs (models/moe.py): routing math against an independent per-token loop,
gradients, router losses against their published formulas, parameter counts against OLMoE-1B-7B."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from bench.run.engine.callbacks import flops_per_batch
from bench.run.config.presets import resolve
from bench.run.config.matrix import Cell, cell_id
from bench.run.engine.probes.measures import PooledMoments
from bench.run.engine.probes.measures import kurtosis
from bench.run.engine.probes.forward import probe_forward
from bench.run.config.options import RunOptions
from bench.run.engine.runner import train_cell
from models import Transformer, TransformerConfig, build_ffn, count_params
from models.moe import MoE, load_balancing_loss, router_z_loss


def make_moe(activation="swiglu", d=16, h=16, E=4, k=2, **kw) -> MoE:
    torch.manual_seed(0)
    moe = MoE(d, lambda: build_ffn(activation, d, h), E, k, **kw)
    with torch.no_grad():
        for p in moe.parameters():  # move activation scalars away from their init too
            p.copy_(torch.randn_like(p) * (0.3 if p.ndim > 1 else 0.5) + (0 if p.ndim > 1 else 0.3))
    return moe


def reference(moe: MoE, x: torch.Tensor, capacity: int | None = None) -> torch.Tensor:
    """Token by token: router softmax, top-k, the chosen experts' outputs weighted; in token order,
    an assignment past an expert's capacity adds nothing."""
    out, used = [], [0] * moe.n_experts
    for xt in x:
        logits = xt @ moe.router.weight.T
        if moe.softmax == "before":
            w, idx = F.softmax(logits, -1).topk(moe.top_k)
        else:
            top, idx = logits.topk(moe.top_k)
            w = F.softmax(top, -1)
        y = torch.zeros_like(xt)
        for wi, e in zip(w, idx.tolist()):
            used[e] += 1
            if capacity is None or used[e] <= capacity:
                y = y + wi * moe.experts[e](xt[None])[0]
        for s in moe.shared:
            y = y + s(xt[None])[0]
        out.append(y)
    return torch.stack(out)


@pytest.mark.parametrize("activation", ["swiglu", "polynorm", "gelu", "powlu"])
@pytest.mark.parametrize("softmax,shared", [("before", 0), ("after", 1)])
def test_forward_equals_a_per_token_loop(activation, softmax, shared):
    moe = make_moe(activation, softmax=softmax, n_shared=shared).double()
    x = torch.randn(2, 7, 16, dtype=torch.double)
    y = moe(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y.view(-1, 16), reference(moe, x.view(-1, 16)))


def test_capacity_drops_overflow_in_token_order_and_counts_it():
    moe = make_moe("swiglu", E=4, k=2, capacity_factor=0.5).double()
    x = torch.randn(20, 16, dtype=torch.double)
    cap = moe.capacity(20)
    assert cap == math.ceil(0.5 * 20 * 2 / 4)
    torch.testing.assert_close(moe(x), reference(moe, x, capacity=cap))
    load = moe.stats["load"]
    assert load.sum() == 40 and moe.stats["dropped"] == (load - load.clamp(max=cap)).sum() > 0


@pytest.mark.parametrize("activation", ["swiglu", "polynorm", "relu2"])
def test_grouped_matmul_path_equals_the_loop(activation):
    """torch.nn.functional.grouped_mm (CPU fallback here; the CUDA bf16 kernel needs a GPU) against the
    per-expert loop: outputs and every gradient."""
    x = torch.randn(3, 11, 16)
    outs, grads = [], []
    for mode in ("off", "on"):
        moe = make_moe(activation, h=16, E=4, k=2, grouped=mode).train()
        xi = x.clone().requires_grad_()
        y = moe(xi)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append(y.detach())
        grads.append([xi.grad] + [p.grad if p.grad is not None else torch.zeros_like(p) for p in moe.parameters()])
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for g_on, g_off in zip(grads[1], grads[0]):
        torch.testing.assert_close(g_on, g_off, rtol=1e-4, atol=1e-5)


def test_router_logits_are_fp32_under_bf16_autocast_and_bf16_weights(monkeypatch):
    import models.moe as moe_module

    seen = []
    real_route = moe_module.route
    monkeypatch.setattr(moe_module, "route", lambda logits, *a: seen.append(logits) or real_route(logits, *a))
    moe = make_moe("swiglu")
    x = torch.randn(12, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = moe(x)
    assert seen[-1].dtype == torch.float32
    torch.testing.assert_close(seen[-1], x @ moe.router.weight.T, rtol=1e-6, atol=1e-6)  # not a bf16 product
    y.float().sum().backward()
    assert moe.router.weight.grad is not None and moe.router.weight.grad.dtype == torch.float32
    half = make_moe("swiglu").to(torch.bfloat16)  # bf16-true: the weights themselves are bf16
    half(x.to(torch.bfloat16))
    assert seen[-1].dtype == torch.float32
    torch.testing.assert_close(seen[-1], x.to(torch.bfloat16).float() @ half.router.weight.float().T)


def test_router_in_fp32_is_bitwise_the_linear_layer():
    moe = make_moe("swiglu")
    x = torch.randn(3, 5, 16)
    assert torch.equal(moe.router_logits(x.view(-1, 16)), moe.router(x.view(-1, 16)))
    assert moe.double().router_logits(x.double().view(-1, 16)).dtype == torch.float64  # never downcast


def test_gradients_reach_only_the_chosen_experts_and_the_router():
    moe = make_moe("polynorm", E=8, k=1)
    x = torch.randn(3, 16)  # 3 tokens, top-1: at most 3 of the 8 experts are chosen
    y = moe(x)
    (y * torch.randn_like(y)).sum().backward()  # the LM path only (router losses not added)
    with torch.no_grad():
        chosen = set(F.softmax(x @ moe.router.weight.T, -1).argmax(-1).tolist())
    assert 1 <= len(chosen) <= 3
    for e, expert in enumerate(moe.experts):
        norm = sum(float(p.grad.abs().sum()) if p.grad is not None else 0.0 for p in expert.parameters())
        assert (norm > 0) == (e in chosen), (e, chosen, norm)
    assert moe.router.weight.grad.abs().sum() > 0


def test_load_balancing_loss_equals_the_switch_formula_by_hand():
    ln3 = math.log(3.0)
    # two tokens, E=2, k=1: p = (.75, .25) and (.25, .75); f = (1/2, 1/2), P = (1/2, 1/2): E sum f P = 1
    logits = torch.tensor([[ln3, 0.0], [0.0, ln3]])
    probs = logits.softmax(-1)
    assert load_balancing_loss(probs, probs.topk(1).indices, 2).item() == pytest.approx(1.0)
    # both to expert 0: f = (1, 0), P = (.75, .25): 2 * .75 = 1.5
    logits = torch.tensor([[ln3, 0.0], [ln3, 0.0]])
    probs = logits.softmax(-1)
    assert load_balancing_loss(probs, probs.topk(1).indices, 2).item() == pytest.approx(1.5)
    # top-2 of E=4, one token with p = (.4, .3, .2, .1): f = (1/2, 1/2, 0, 0), P = p: 4 * (.2 + .15) = 1.4
    probs = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    assert load_balancing_loss(probs, probs.topk(2).indices, 4).item() == pytest.approx(1.4)


def test_router_z_loss_equals_the_st_moe_formula_by_hand():
    ln3 = math.log(3.0)
    logits = torch.tensor([[ln3, 0.0], [0.0, 0.0]])  # logsumexp: log 4 and log 2
    assert router_z_loss(logits).item() == pytest.approx((math.log(4) ** 2 + math.log(2) ** 2) / 2)


def test_one_expert_top1_equals_the_dense_ffn():
    dense_cfg = TransformerConfig(activation="polynorm", d_model=32, n_heads=4, ref_intermediate_size=48, n_layers=2)
    moe_cfg = TransformerConfig(**{**dense_cfg.__dict__, "ffn": "moe", "moe_experts": 1, "moe_top_k": 1,
                                   "moe_ref_intermediate_size": 48})
    dense, moe = Transformer(dense_cfg), Transformer(moe_cfg)
    state = {k.replace(".ffn.", ".ffn.experts.0."): v for k, v in dense.state_dict().items()}
    missing = moe.load_state_dict(state, strict=False).missing_keys
    assert all(k.endswith("router.weight") for k in missing) and len(missing) == 2
    x = torch.randint(0, 256, (2, 9))
    y_dense, y_moe = dense(x), moe(x)
    torch.testing.assert_close(y_moe, y_dense, rtol=0, atol=0)
    y_dense.square().mean().backward()
    y_moe.square().mean().backward()
    torch.testing.assert_close(moe.blocks[0].ffn.experts[0].up.weight.grad, dense.blocks[0].ffn.up.weight.grad)


@pytest.mark.parametrize("activation,h", [("swiglu", 1024), ("polynorm", 1536), ("gelu", 1536)])
def test_polycom_moe_parameter_counts(activation, h):
    cfg = resolve({"scale": "polycom-moe", "recipe": "polycom-moe", "activation": activation}).model
    c = count_params(cfg)
    assert c.intermediate_size == h and cfg.vocab_size == 50304
    # OLMoE-1B-7B: 6.9B total, 1.3B active (both published rounded to 0.1B)
    assert abs(c.total - 6.9e9) / 6.9e9 < 0.01
    assert round(c.active / 1e9, 1) == 1.3
    d, L, V, E, k = 2048, 16, 50304, 64, 8
    expert = 3 * d * 1024  # SwiGLU reference expert; the others are matched to it
    assert abs(c.expert_ffn - expert) <= 4  # PolyNorm: 4 scalars per expert
    assert c.active == c.total - L * (E - k) * c.expert_ffn
    assert c.total == L * (4 * d * d + E * c.expert_ffn + d * E + 2 * d) + d + 2 * V * d
    with torch.device("meta"):
        assert sum(p.numel() for p in Transformer(cfg).parameters()) == c.total


def test_counts_match_a_built_model_with_shared_experts():
    cfg = resolve({"scale": "nano-moe", "activation": "polyrelu", "norm": "sandwich+gpas",
                   "model.moe_shared_experts": 1}).model
    c = count_params(cfg)
    assert sum(p.numel() for p in Transformer(cfg).parameters()) == c.total
    assert c.active == c.total - cfg.n_layers * (cfg.moe_experts - cfg.moe_top_k) * c.expert_ffn


@pytest.mark.parametrize("settings,message", [
    ({"moe_top_k": 5, "moe_experts": 4}, "moe_top_k must lie in [1, moe_experts=4], got 5"),
    ({"moe_experts": 0, "moe_top_k": 1}, "moe_experts must be at least 1, got 0"),
    ({"moe_capacity_factor": 0.0}, "moe_capacity_factor must be > 0"),
    ({"moe_capacity_factor": -1.0}, "moe_capacity_factor must be > 0"),
    ({"ffn": "sparse"}, "unknown ffn 'sparse'"),
    ({"moe_softmax": "later"}, "unknown moe softmax order 'later'"),
])
def test_bad_options_one_clear_line(settings, message):
    with pytest.raises(ValueError) as e:
        TransformerConfig(**{"ffn": "moe", **settings})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_option_on_the_command_line_exits_2(capsys):
    from bench.cli import main

    assert main(["plan", "--scale", "nano-moe", "--activation", "swiglu", "--norm", "pre",
                 "--model.moe_top_k", "9"]) == 2
    err = capsys.readouterr().err
    assert "moe_top_k must lie in [1, moe_experts=4], got 9" in err and err.count("\n") == 1


def test_flops_count_active_experts_only():
    """Meta-device FLOPs of an MoE = a dense FFN k times as wide + the router (forward and backward)."""
    base = {"d_model": 32, "n_heads": 4, "n_layers": 2, "activation": "swiglu"}
    B, T, E, k, h = 2, 16, 4, 2, 24
    dense = flops_per_batch(TransformerConfig(**base, intermediate_size=k * h), B, T)
    moe = flops_per_batch(TransformerConfig(**base, ffn="moe", moe_experts=E, moe_top_k=k, moe_intermediate_size=h),
                          B, T)
    assert moe == dense + 2 * 3 * B * T * 32 * E * 2  # router: 2 d E per token, x3 forward + backward, 2 layers


def test_dense_config_hash_ignores_moe_options():
    a = resolve({"scale": "nano"})
    b = resolve({"scale": "nano", "model.moe_experts": 3, "model.moe_top_k": 1})
    assert a.config_hash() == b.config_hash()
    assert resolve({"scale": "nano", "model.ffn": "moe", "model.moe_top_k": 1}).config_hash() != a.config_hash()


def test_pooled_moments_equal_the_concatenation():
    parts = [torch.randn(5, 7) * 2 + 1, torch.randn(0, 7), torch.randn(3, 7) ** 3]
    pooled = PooledMoments()
    for p in parts:
        pooled.update(p)
    whole = torch.cat([p.flatten() for p in parts])
    torch.testing.assert_close(pooled.result(), torch.stack([whole.abs().max(), kurtosis(whole)]), rtol=1e-5, atol=1e-5)


def test_probe_forward_pools_the_experts_of_each_layer():
    cfg = resolve({"scale": "nano-moe", "activation": "swiglu"}).model
    model = Transformer(cfg).eval()
    x = torch.randint(0, 256, (2, 16))
    out = probe_forward(model, x)
    assert out["ffn"].shape == (cfg.n_layers, 2) and torch.isfinite(out["ffn"]).all()


@pytest.mark.slow  # trains a MoE cell
def test_a_moe_cell_trains_and_records_its_routing(tmp_path, tiny_dm):
    cfg = resolve({"scale": "nano-moe", "activation": "polynorm", "norm": "pre+gpas", "train.max_steps": 6,
                   "train.val_every": 6, "train.warmup_steps": 1, "train.throughput_warmup": 1,
                   "train.log_every": 1, "train.probe_every": 2, "model.moe_capacity_factor": 1.0})
    cell = Cell(cell_id(cfg, {}), cfg, ())
    rec = train_cell(cell, "t", tiny_dm, RunOptions(out=tmp_path, quiet=True, ckpt_every=0))
    assert rec.status == "ok", rec.traceback
    moe = rec.moe
    assert moe["steps"] == [0, 2, 4, 5]
    L, E = cfg.model.n_layers, cfg.model.moe_experts
    for load in moe["load"]:
        assert len(load) == L and all(len(row) == E and sum(row) == pytest.approx(1.0) for row in load)
    assert all(1.0 <= r <= E / cfg.model.moe_top_k + 1e-6 for s in moe["load_max_over_mean"] for r in s)
    assert all(0 <= h <= math.log(E) + 1e-6 for s in moe["router_entropy"] for h in s)
    assert all(0 <= f < 1 for s in moe["dropped_fraction"] for f in s)
    assert rec.metrics.flops_basis.startswith("active")
    assert rec.params.active < rec.params.total
    header = (tmp_path / "t" / cell.id / "metrics.csv").read_text().splitlines()[0]
    assert "train/moe_lb_loss" in header and "train/moe_z_loss" in header
    json.dumps(rec.to_dict())
    from bench.results.report import render_html

    page = render_html([rec], "t")
    assert "Mixture of experts: routing" in page and page.count("expert load per layer") == 1
    assert page.count("data:image/png;base64") >= 2 and "not drawn" not in page


def test_eval_forwards_leave_the_training_routing_statistics_alone():
    moe = make_moe("swiglu")
    moe(torch.randn(10, 16))
    stats, aux = moe.stats, moe.aux
    moe.eval()
    moe(torch.randn(30, 16))  # a validation or probe forward
    assert moe.stats is stats and moe.aux is aux and int(stats["load"].sum()) == 20


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fast grouped_mm kernel needs CUDA SM80+ (no GPU here)")
def test_cuda_bf16_grouped_path_matches_the_loop():
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("grouped_mm needs SM80+")
    x = torch.randn(4, 64, 64, device="cuda", dtype=torch.bfloat16)
    outs = []
    for mode in ("off", "auto"):
        moe = make_moe("swiglu", d=64, h=128, E=8, k=2, grouped=mode).cuda().to(torch.bfloat16).train()
        outs.append(moe(x).float())
    torch.testing.assert_close(outs[1], outs[0], rtol=2e-2, atol=2e-2)


def test_plan_shows_polycom_moe_sizes_and_the_ffn_axis(capsys):
    from bench.cli import main

    assert main(["plan", "--scale", "polycom-moe", "--recipe", "polycom-moe", "--activation", "swiglu,polynorm",
                 "--norm", "pre", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["cells"]
    assert [r["intermediate_size"] for r in rows] == [1024, 1536]
    assert all(round(r["params"] / 1e9, 1) == 6.9 and round(r["params_active"] / 1e9, 1) == 1.3 for r in rows)
    assert all(abs(r["deviation"]) < 1e-5 and r["params_expert_ffn"] > 0 for r in rows)
    assert main(["plan", "--scale", "micro-moe", "--activation", "swiglu", "--norm", "pre",
                 "--model.ffn", "moe,dense", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["cells"]
    assert [r["ffn"] for r in rows] == ["moe", "dense"] and rows[0]["params_active"] < rows[0]["params"]
    assert rows[1]["params_active"] == rows[1]["params"]
