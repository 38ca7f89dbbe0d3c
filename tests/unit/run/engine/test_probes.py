"""The probes callback (bench/run/engine/probes.py): each measurement against an independent computation, and
a short nano training run with GPAS through a Lightning Trainer."""

import io
import json
import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.run.config.presets import resolve
from bench.run.engine.module import LMModule, lm_loss, split_batch
from bench.run.engine.probes.training import Probes
from bench.run.engine.probes.measures import effective_rank, find_spikes, kurtosis, layer_cosine
from bench.run.engine.probes.forward import first_loader, skipped, token_loss
from tiny_data import TinyDataModule
from models import Transformer

STEPS, EVERY = 12, 5


def nano_cfg(**settings):
    base = {"scale": "nano", "train.max_steps": STEPS, "train.warmup_steps": 2, "train.probe_every": EVERY}
    return resolve({**base, **settings})


def train(cfg, dm, *callbacks, accumulate=1):
    L.seed_everything(0, verbose=False)
    module = LMModule(cfg)
    trainer = L.Trainer(accelerator="cpu", max_steps=cfg.train.max_steps, accumulate_grad_batches=accumulate,
                        limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, callbacks=list(callbacks))
    trainer.fit(module, datamodule=dm)
    return module


class Spy(L.Callback):
    """Independent measurements at the step the probes sample first, and every micro-batch loss."""

    def __init__(self, x):
        self.x, self.micro_losses = x, []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step == 0:
            model = pl_module.model
            self.grad_norm = [math.sqrt(sum(p.grad.square().sum().item() for p in b.parameters()))
                              for b in model.blocks]
            with torch.no_grad():
                _, hidden = model.eval()(self.x, return_hidden=True)
            model.train()
            self.act_var = [h.var(correction=0).item() for h in hidden]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.micro_losses.append(pl_module.last_train_loss.item())


@pytest.fixture(scope="module")
def gpas_run():
    dm = TinyDataModule()
    cfg = nano_cfg(norm="pre+gpas")
    probes = Probes.from_config(cfg, dm)
    spy = Spy(probes.x)
    module = train(cfg, dm, probes, spy)
    return probes.result(), module, probes, spy


# ---------------------------------------------------------------- helpers on known inputs

def numpy_erank(w):
    s = np.linalg.svd(np.asarray(w, dtype=np.float64), compute_uv=False)
    p = s[s > 0] / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def test_effective_rank_of_known_matrices():
    assert effective_rank(torch.eye(7)) == pytest.approx(7)
    assert effective_rank(torch.outer(torch.randn(6), torch.randn(9))) == pytest.approx(1, abs=1e-6)
    assert effective_rank(torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0]))) == pytest.approx(2)
    w = torch.randn(40, 108)
    assert effective_rank(w) == pytest.approx(numpy_erank(w.numpy()), rel=1e-6)


def test_kurtosis_of_normal_and_laplace():
    g = torch.Generator().manual_seed(0)
    assert kurtosis(torch.randn(1_000_000, generator=g)).item() == pytest.approx(3.0, abs=0.05)
    torch.manual_seed(0)
    laplace = torch.distributions.Laplace(0.5, 2.0).sample((1_000_000,))
    assert kurtosis(laplace).item() == pytest.approx(6.0, abs=0.2)


def test_layer_cosine_against_a_loop():
    hidden = [torch.randn(2, 5, 8) + i * torch.ones(8) for i in range(4)]
    c = layer_cosine(hidden)
    for i in range(4):
        for j in range(4):
            a, b = hidden[i].reshape(-1, 8), hidden[j].reshape(-1, 8)
            assert c[i, j].item() == pytest.approx(F.cosine_similarity(a, b, dim=-1).mean().item(), abs=1e-5)


def test_loss_spike_detector_finds_the_planted_spike():
    rng = np.random.default_rng(0)
    losses = (4.0 * np.exp(-np.arange(300) / 80) + 2.0 + rng.normal(0, 0.01, 300)).tolist()
    assert find_spikes(losses) == []
    losses[150] += 0.5
    assert find_spikes(losses) == [150]
    losses[150] -= 0.5
    losses[200] += 0.05  # above 3 std of the noise but below the +0.1 nats floor
    assert find_spikes(losses) == []


def test_skipped_block_returns_its_input_and_is_restored():
    model = Transformer(resolve({"scale": "nano"}).model)
    x = torch.randint(0, 256, (2, 16))
    before = model(x)
    with skipped(model.blocks[1]):
        h = torch.randn(2, 16, 40)
        assert model.blocks[1](h, None) is h
        assert not torch.equal(model(x), before)
    assert torch.equal(model(x), before)


# ---------------------------------------------------------------- a training run with GPAS

def test_samples_every_k_steps_with_per_layer_values(gpas_run):
    res, module, _, _ = gpas_run
    n_layers = module.cfg.model.n_layers
    assert res["every"] == EVERY and res["steps"] == [0, 5, 10, 11]  # every 5, and the last step
    assert all(len(v) == n_layers + 1 for v in res["act_var"])
    for key in ("grad_norm", "weight_norm", "attn_weight_norm", "ffn_weight_norm", "ffn_max_abs", "ffn_kurtosis"):
        assert len(res[key]) == 4 and all(len(v) == n_layers for v in res[key]), key
    assert all(g > 0 and math.isfinite(g) for v in res["grad_norm"] for g in v)
    assert all(w > 0 for v in res["weight_norm"] for w in v)
    assert all(m > 0 for v in res["ffn_max_abs"] for m in v) and all(k > 1 for v in res["ffn_kurtosis"] for k in v)
    assert res["grad_norm_basis"] == "before clipping"
    json.dumps(res, allow_nan=False)  # the record is plain JSON


def test_first_sample_matches_an_independent_computation(gpas_run):
    res, _, _, spy = gpas_run
    assert res["act_var"][0] == pytest.approx(spy.act_var, rel=1e-5)
    assert res["grad_norm"][0] == pytest.approx(spy.grad_norm, rel=1e-5)


def test_gpas_gates_move_and_scale_is_one_minus_silu(gpas_run):
    res, module, _, _ = gpas_run
    first, last = res["gpas_gate"][0], res["gpas_gate"][-1]
    assert first == [0.0] * len(first)  # initialised at 0
    assert all(abs(a) > 1e-3 for a in last)
    for gates, scales in zip(res["gpas_gate"], res["gpas_scale"]):
        expected = (1 - F.silu(torch.tensor(gates))).tolist()
        assert scales == pytest.approx(expected, abs=1e-6)


def test_end_of_training_analyses(gpas_run):
    res, module, probes, _ = gpas_run
    model, n = module.model, module.cfg.model.n_layers
    ranks = res["effective_rank"]
    assert set(ranks) == {f"{i}.{m}" for i in range(1, n + 1) for m in ("gate", "up", "down")}
    for key, value in ranks.items():
        layer, name = key.split(".")
        w = getattr(model.blocks[int(layer) - 1].ffn, name).weight
        assert value == pytest.approx(numpy_erank(w.detach().numpy()), rel=1e-6)
        assert 1 <= value <= min(w.shape)
    c = torch.tensor(res["layer_cosine"])
    assert c.shape == (n + 1, n + 1)
    assert torch.allclose(c.diagonal(), torch.ones(n + 1), atol=1e-5) and torch.allclose(c, c.T, atol=1e-6)
    assert c.min() >= -1 and c.max() <= 1
    assert len(res["layer_importance"]) == n and all(abs(d) > 1e-4 for d in res["layer_importance"])
    batches = [split_batch(b) for b, _ in zip(first_loader(probes.val_batches()), range(probes.importance_batches))]
    assert res["base_loss"] == pytest.approx(token_loss(model.eval(), batches), rel=1e-5)
    assert res["importance_tokens"] == sum(y.numel() for _, y in batches)
    assert res["overhead_seconds"] > 0 and res["overhead_train_seconds"] > 0


def test_probes_do_not_change_training(tiny_dm, gpas_run):
    _, with_probes, _, _ = gpas_run
    without = train(nano_cfg(norm="pre+gpas"), tiny_dm)
    for (name, a), b in zip(with_probes.state_dict().items(), without.state_dict().values()):
        assert torch.equal(a, b), name


def test_one_loss_per_optimizer_step_with_accumulation(tiny_dm):
    x = next(iter(tiny_dm.val_dataloader()[0]))
    probes, spy = Probes(3, x), Spy(x[:, :-1])
    train(nano_cfg(**{"train.max_steps": 6}), tiny_dm, probes, spy, accumulate=2)
    assert probes.result()["steps"] == [0, 3, 5]
    micro = spy.micro_losses
    assert sorted(probes.losses) == list(range(6))
    assert [probes.losses[s] for s in range(6)] == pytest.approx(
        [(micro[2 * s] + micro[2 * s + 1]) / 2 for s in range(6)], rel=1e-6)


def test_probes_off_record_nothing(tiny_dm):
    assert Probes.from_config(nano_cfg(**{"train.probe_every": 0}), tiny_dm) is None
    probes = Probes(0, next(iter(tiny_dm.val_dataloader()[0])))
    train(nano_cfg(**{"train.max_steps": 4}), tiny_dm, probes)
    res = probes.result()
    assert res["steps"] == [] and res["act_var"] == [] and res["gpas_gate"] is None
    assert res["effective_rank"] == {} and res["layer_importance"] == [] and res["base_loss"] is None
    assert res["loss_spikes"] == 0 and probes.losses == {} and res["overhead_seconds"] == 0.0


def test_base_loss_matches_lm_loss_without_a_loader(tiny_dm):
    """Without a validation factory, layer importance runs on the probe batch itself."""
    x = next(iter(tiny_dm.val_dataloader()[0]))
    probes = Probes(100, x)
    module = train(nano_cfg(**{"train.max_steps": 3}), tiny_dm, probes)
    model = module.model.eval()
    with torch.no_grad():
        expected = lm_loss(model(x[:, :-1]), x[:, 1:]).item()
    assert probes.result()["base_loss"] == pytest.approx(expected, rel=1e-5)


def test_history_survives_a_checkpoint_round_trip(gpas_run):
    _, _, probes, _ = gpas_run
    restored = Probes(EVERY, (probes.x, probes.y))
    buffer = io.BytesIO()
    torch.save(probes.state_dict(), buffer)  # as Lightning stores a callback's state in a checkpoint
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    a, b = probes.result(), restored.result()
    for key in ("steps", "act_var", "grad_norm", "gpas_gate", "spike_steps", "overhead_train_seconds"):
        assert a[key] == b[key], key
