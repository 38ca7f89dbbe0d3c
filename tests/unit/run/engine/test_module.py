"""The training side: optimizer groups, schedule, clipping, metrics, records, leaderboard."""

import json
import math

import pytest
import torch

from bench.run.engine.callbacks import flops_per_batch, steady_state
from bench.run.config.presets import resolve
from bench.results.records import Record
from bench.run.engine.module import LMModule, cosine_with_warmup, lm_loss, param_groups
from bench.run.config.options import RunOptions
from bench.run.engine.runner import train_cell
from models import Transformer, count_params
from tiny_data import nano_cell



def test_param_groups_exclude_vectors_and_gates_from_decay():
    cfg = resolve({"scale": "nano", "activation": "polynorm", "norm": "pre+gpas"}).model
    model = Transformer(cfg)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert any("gpas" in n for n in no_decay_names)
    assert any("act.weight" in n for n in no_decay_names) and any("act.bias" in n for n in no_decay_names)
    assert any("norm" in n for n in no_decay_names)
    assert not any("gpas" in n or "norm" in n or ".act." in n for n in decay_names)
    assert {n.rsplit(".", 2)[-2] for n in decay_names} >= {"q", "k", "v", "o", "up", "down", "embed", "lm_head"}


def test_cosine_schedule_shape():
    f = lambda s: cosine_with_warmup(s, warmup=10, total=110, min_ratio=0.1)  # noqa: E731
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 120))


def test_lm_loss_ignores_padding():
    logits = torch.randn(2, 5, 7)
    targets = torch.randint(0, 7, (2, 5))
    padded = targets.clone()
    padded[1, 3:] = -100
    keep = padded != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    assert torch.allclose(lm_loss(logits, padded), expected)


def test_validation_is_token_weighted():
    """Two batches with 3 and 1 valid tokens: the mean weighs tokens, not batches (the GPAS eval
    divided summed batch means by n + 1 batches)."""
    module = LMModule(resolve({"scale": "nano"}))
    metric = module.val_loss[0]
    metric.update(torch.tensor(1.0), weight=torch.tensor(3))
    metric.update(torch.tensor(5.0), weight=torch.tensor(1))
    assert metric.compute().item() == pytest.approx((3 * 1.0 + 1 * 5.0) / 4)


def test_flop_count_close_to_6NT():
    cfg = resolve({"scale": "micro"}).model
    flops = flops_per_batch(cfg, batch_size=4, seq_len=cfg.block_size)
    n = count_params(cfg).total - cfg.vocab_size * cfg.d_model  # the embedding lookup is no matmul
    tokens = 4 * cfg.block_size
    attention = 3 * 2 * 2 * cfg.n_layers * cfg.block_size * cfg.d_model * tokens  # QK^T and AV, fwd+bwd
    assert 6 * n * tokens <= flops <= 6 * n * tokens + attention * 1.01


def test_steady_state_uses_lightning_throughput():
    series = [(10.0 + 0.5 * b, b) for b in range(21)]  # 0.5 s per batch of 1000 tokens
    out = steady_state(series, tokens=1000, samples=8, flops=4e9, peak_flops=1e10)
    assert out["tokens_per_sec"] == pytest.approx(2000)
    assert out["mfu"] == pytest.approx(4e9 / 0.5 / 1e10)


def test_steady_state_from_the_window_edges_alone_counts_every_batch_flops():
    """CellMetrics keeps only the window's edges (no per-step sync): 20 batches between two points
    must count 20 batches' FLOPs, per device and over ranks."""
    out = steady_state([(10.0, 0), (20.0, 20)], tokens=1000, samples=8, flops=4e9, peak_flops=1e10)
    assert out["tokens_per_sec"] == pytest.approx(2000) and out["mfu"] == pytest.approx(4e9 / 0.5 / 1e10)
    two = steady_state([(10.0, 0), (20.0, 20)], tokens=1000, samples=8, flops=4e9, peak_flops=1e10, world_size=2)
    assert two["mfu"] == pytest.approx(out["mfu"]) and two["flops_per_sec"] == pytest.approx(2 * 4e9 / 0.5)
    assert two["tokens_per_sec"] == pytest.approx(2 * 2000)


def test_train_cell_writes_a_complete_record(tmp_path, tiny_dm):
    cell = nano_cell()
    rec = train_cell(cell, "t", tiny_dm, RunOptions(out=tmp_path, quiet=True))
    assert rec.status == "ok", rec.traceback
    on_disk = json.loads((tmp_path / "t" / cell.id / "record.json").read_text())
    assert on_disk["config_hash"] == cell.config.config_hash() and on_disk["status"] == "ok"
    m = on_disk["metrics"]
    assert m["steps"] == 12 and m["tokens"] == 12 * 8 * 64
    assert m["val_ppl"] == pytest.approx(math.exp(m["val_loss"]), rel=1e-5)
    assert m["ood_ppl"] > 0 and m["tokens_per_sec"] > 0 and 0 < m["mfu"] < 1
    assert m["peak_memory_bytes"] > 10 * 2**20 and m["train_seconds"] > 0
    assert on_disk["params"]["total"] == count_params(cell.config.model).total
    env = on_disk["environment"]
    assert env["packages"]["torch"] == torch.__version__.split("+")[0] or env["packages"]["torch"]
    assert "git" in env and on_disk["started"] <= on_disk["ended"]
    curves = (tmp_path / "t" / cell.id / "metrics.csv").read_text()
    assert "train/loss" in curves and "val/loss" in curves


def test_training_learns_the_pattern(tmp_path, tiny_dm):
    cell = nano_cell(**{"train.max_steps": 60, "train.lr": 1e-2})
    rec = train_cell(cell, "t", tiny_dm, RunOptions(out=tmp_path, quiet=True))
    assert rec.status == "ok"
    assert rec.metrics.val_loss < math.log(256) - 1.0  # well below uniform guessing


def test_non_finite_loss_is_recorded_as_diverged(tmp_path, tiny_dm):
    cell = nano_cell(**{"train.lr": 1e6, "train.grad_clip": 0.0, "train.max_steps": 40, "train.warmup_steps": 1})
    rec = train_cell(cell, "t", tiny_dm, RunOptions(out=tmp_path, quiet=True))
    assert rec.status == "diverged" and rec.diverged_step < 40


def test_exception_is_recorded_as_failed(tmp_path, tiny_dm, monkeypatch):
    def boom(self, batch, batch_idx):
        raise RuntimeError("injected failure")
    monkeypatch.setattr(LMModule, "training_step", boom)
    rec = train_cell(nano_cell(), "t", tiny_dm, RunOptions(out=tmp_path, quiet=True))
    assert rec.status == "failed" and "injected failure" in rec.traceback


def test_gpas_gate_clip_bounds_the_joint_gate_gradient():
    cfg = resolve({"scale": "nano", "norm": "pre+gpas", "train.gpas_grad_clip": 1e-3, "train.grad_clip": 0.0})
    module = LMModule(cfg)
    x = torch.randint(0, 256, (2, 17))
    lm_loss(module.model(x[:, :-1]), x[:, 1:]).backward()
    gates = [p for n, p in module.model.named_parameters() if "gpas" in n]
    before = torch.linalg.vector_norm(torch.stack([g.grad for g in gates]))
    assert before > 1e-3
    module.configure_gradient_clipping(None)
    after = torch.linalg.vector_norm(torch.stack([g.grad for g in gates]))
    assert after == pytest.approx(1e-3, rel=1e-4)


def _record(act, norm, seed, ppl, status="ok"):
    return Record.from_dict({"id": f"{act}-{norm}-{seed}", "scale": "micro", "activation": act, "norm": norm,
            "seed": seed, "status": status, "metrics": {"val_ppl": ppl, "tokens_per_sec": 1000.0, "mfu": 0.1,
                                          "peak_memory_bytes": 2**20},
            "params": {"total": 10, "non_embedding": 5}, "config": {"data": {"tokenizer": "bytes"}},
            "data": {"unigram_ppl": 30.0, "tokenizer_fingerprint": "abcdef123"}})


def test_bf16_true_validation_is_accumulated_in_full_precision(tmp_path, tiny_dm):
    """Under bf16-true Lightning casts the module (metric states included) and logs in bf16:
    the record's losses must not be rounded to bf16."""
    cell = nano_cell(**{"train.precision": "bf16-true"})
    rec = train_cell(cell, "t", tiny_dm, RunOptions(out=tmp_path, quiet=True))
    assert rec.status == "ok", rec.traceback
    losses = [rec.metrics.get(k) for k in ("val_loss", "ood_loss", "train_loss")]
    rounded = [float(torch.tensor(v).bfloat16()) for v in losses]
    assert sum(v != r for v, r in zip(losses, rounded)) >= 2


def test_final_validation_runs_at_the_last_step_with_accumulation(tmp_path, tiny_dm):
    cell = nano_cell(**{"train.grad_accum": 2, "train.max_steps": 8, "train.val_every": 4})
    rec = train_cell(cell, "t", tiny_dm, RunOptions(out=tmp_path, quiet=True))
    assert rec.status == "ok" and rec.metrics.steps == 8
    assert rec.metrics.val_ppl > 1 and rec.metrics.tokens == 8 * 2 * 8 * 64
