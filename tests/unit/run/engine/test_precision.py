"""Precision as a matrix axis (32-true, bf16-true on CPU; fp8 on capable GPUs only), outlier
statistics against hand computations, and saved weights."""

import json
import math

import pytest
import torch

from bench.cli import main
from bench.errors import ConfigError
from bench.results.figures.cells import fig_outliers
from bench.results.report import precision_section
from bench.results.tables.leaderboard import build_leaderboard, to_markdown
from bench.results.records import Record
from bench.results.weights import has_weights, load_cell
from bench.run.config.presets import resolve
from bench.run.config.matrix import Cell, cell_id
from bench.run.engine.probes.outliers import STATS, outlier_stats, site_stats
from bench.run.config.precision import check_device, fp8_device_problem, fp8_recipe, lightning_precision
from bench.run.engine.probes.forward import probe_forward
from bench.run.config.options import RunOptions
from bench.run.engine.runner import train_cell
from datamodules.tokenizers import ByteTokenizer
from models import Transformer, TransformerConfig, load_weights, save_weights

FP8_PROBLEM = fp8_device_problem()  # None on a CUDA device with compute capability >= 8.9 and torchao


def nano(**settings) -> Cell:
    base = {"scale": "nano", "train.max_steps": 6, "train.val_every": 6, "train.warmup_steps": 2,
            "train.throughput_warmup": 1, "train.log_every": 1, "train.probe_every": 3, "data.ood_corpus": "kjv"}
    cfg = resolve({**base, **settings})
    axes = tuple((k, v) for k, v in settings.items() if k == "train.precision")
    return Cell(cell_id(cfg, dict(axes)), cfg, axes)


# ---- outlier statistics by hand -------------------------------------------------------------

def test_outlier_stats_match_a_hand_computation():
    values = [0.0, 1e-3, -2.0, 500.0, 4.0, -1.0, 1e-40, 0.5]  # 1e-40: an fp32 subnormal
    got = dict(zip(STATS, outlier_stats(torch.tensor(values, dtype=torch.float32)).tolist()))
    assert got["max_abs"] == 500.0
    mean = sum(values) / 8
    m2 = sum((v - mean) ** 2 for v in values) / 8
    m4 = sum((v - mean) ** 4 for v in values) / 8
    assert got["kurtosis"] == pytest.approx(m4 / m2 ** 2, rel=1e-4)
    assert got["e4m3_over"] == 1 / 8  # only 500 > 448
    # scale 448/500 = 0.896: 1e-3 -> 8.96e-4 and 1e-40 fall below 2^-6 = 0.015625; 0 is not counted
    assert got["e4m3_under"] == 2 / 8
    assert got["bf16_over"] == 0.0
    assert got["bf16_under"] == 1 / 8  # 1e-40 < 2^-126
    big = dict(zip(STATS, outlier_stats(torch.tensor([3.4e38, 1.0, 0.0, 2.0])).tolist()))
    assert big["bf16_over"] == 1 / 4  # 3.4e38 > bf16's max finite 3.3895e38 (fp32 holds it)


def test_site_stats_agree_with_the_hidden_states_and_the_probes():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(d_model=32, n_layers=3, n_heads=2, ref_intermediate_size=64)).eval()
    x = torch.randint(0, 256, (2, 16))
    stats = site_stats(model, x)
    assert set(stats) == {"ffn_hidden", "ffn_out", "resid"} and stats["resid"].shape == (3, len(STATS))
    ref = probe_forward(model, x)
    for layer, h in enumerate(ref["hidden"][1:]):
        assert stats["resid"][layer, 0] == h.abs().max()
    assert torch.allclose(stats["ffn_hidden"][:, :2], ref["ffn"])  # max|a| and kurtosis, as Probes has them
    block = model.blocks[0]  # FFN output: the FFN of block 1 applied to its own input
    seen = {}
    block.ffn.register_forward_hook(lambda m, a, out: seen.setdefault("out", out))
    with torch.no_grad():
        model(x)
    assert stats["ffn_out"][0, 0] == seen["out"].abs().max()


def test_site_stats_record_the_ffn_hidden_site_of_a_moe():
    # the union of every expert's hidden activation of a layer (routed ones on their tokens, shared on all)
    torch.manual_seed(0)
    cfg = resolve({"scale": "nano-moe", "activation": "swiglu", "model.moe_shared_experts": 1}).model
    model = Transformer(cfg).eval()
    x = torch.randint(0, 256, (2, 16))
    stats = site_stats(model, x)
    assert set(stats) == {"ffn_hidden", "ffn_out", "resid"}
    assert stats["ffn_hidden"].shape == (cfg.n_layers, len(STATS))
    inputs = []
    for block in model.blocks:
        block.ffn.register_forward_pre_hook(lambda m, args: inputs.append(args[0].reshape(-1, args[0].shape[-1])))
    with torch.no_grad():
        model(x)
    for layer, (block, h) in enumerate(zip(model.blocks, inputs)):
        moe = block.ffn
        with torch.no_grad():
            chosen = (h @ moe.router.weight.T).softmax(-1).topk(moe.top_k).indices  # (T, k)
            parts = [h[(chosen == e).any(-1)] for e in range(moe.n_experts)]
            hidden = [f.act(f.gate(t), f.up(t)) for f, t in zip(moe.experts, parts)]
            hidden += [f.act(f.gate(h), f.up(h)) for f in moe.shared]
        expected = outlier_stats(torch.cat([a.flatten() for a in hidden]))
        torch.testing.assert_close(stats["ffn_hidden"][layer], expected)
    pooled = probe_forward(model, x)["ffn"]  # the Probes' pooled max|a| and kurtosis agree
    torch.testing.assert_close(stats["ffn_hidden"][:, :2], pooled, rtol=1e-4, atol=1e-4)


# ---- precision axis -------------------------------------------------------------------------

def test_precision_names_and_the_lightning_precision_they_run():
    assert fp8_recipe("fp8") == "tensorwise" and fp8_recipe("fp8-rowwise") == "rowwise"
    assert fp8_recipe("bf16-true") is None
    assert lightning_precision("fp8-rowwise") == "bf16-mixed" and lightning_precision("32-true") == "32-true"
    with pytest.raises(Exception, match="fp8-blockwise"):
        resolve({"scale": "nano", "train.precision": "fp8-blockwise"})


def test_precision_axis_trains_32_true_and_bf16_true_on_cpu(tmp_path, tiny_dm):
    tiny_dm.tokenizer = ByteTokenizer()
    records = []
    for prec in ("32-true", "bf16-true"):
        cell = nano(**{"train.precision": prec})
        rec = train_cell(cell, "p", tiny_dm, RunOptions(out=tmp_path, quiet=True, save_weights=True)).to_dict()
        assert rec["status"] == "ok", rec.get("traceback")
        assert rec["precision"] == prec and rec["lightning_precision"] == prec and "fp8_recipe" not in rec
        o = rec["outliers"]
        assert o["steps"] == [0, 3, 5]
        for site in ("ffn_hidden", "ffn_out", "resid"):
            assert len(o["sites"][site]["max_abs"]) == 3 and len(o["sites"][site]["max_abs"][-1]) == 4
        assert has_weights(tmp_path / "p" / cell.id) and rec["weights"] == "weights"
        records.append(Record.from_dict(json.loads((tmp_path / "p" / cell.id / "record.json").read_text())))
    # the leaderboard: a precision column, and each precision its own pivot row
    board = build_leaderboard(records, "p")
    assert sorted(v["precision"] for v in board.cells.values()) == ["32-true", "bf16-true"]
    (p,) = board.pivots
    assert len(p.rows) == 2 and all("bf16-true" in lab or "32-true" in lab for lab in p.rows)
    assert "| precision |" in to_markdown(board)
    # the report section: one summary row per cell, a figure
    section = precision_section(records)
    assert section.title == "Outliers under precision" and fig_outliers(records)
    assert [v["precision"] for v in section.blocks[-1].values()] == ["32-true", "bf16-true"]
    # the bf16 cell's weights reload as float32 and still load into a Transformer
    model, tok, meta = load_cell(tmp_path / "p" / records[1].id)
    assert meta["harness"]["run_config"]["train"]["precision"] == "bf16-true"
    assert tok.fingerprint == ByteTokenizer.fingerprint and next(model.parameters()).dtype == torch.float32


@pytest.mark.skipif(FP8_PROBLEM is None, reason="this machine can train fp8: the fail-fast path does not apply")
def test_fp8_fails_fast_with_one_line_off_gpu(tmp_path, capsys):
    cfg = nano(**{"train.precision": "fp8-rowwise"}).config
    with pytest.raises(ConfigError, match="fp8.*compute capability >= 8.9"):
        check_device([cfg])
    code = main(["run", "--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--train.precision", "fp8",
                 "--train.max_steps", "2", "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "compute capability >= 8.9" in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_fp8_conversion_swaps_the_block_linears_only():
    pytest.importorskip("torchao", reason="torchao (the 'gpu' extra) is not installed")
    from bench.run.engine.fp8 import convert_fp8

    model = Transformer(TransformerConfig(d_model=64, n_layers=2, n_heads=4, ref_intermediate_size=128,
                                          intermediate_size=128, activation="swiglu"))
    n = convert_fp8(model, "tensorwise", emulate=True)
    names = [name for name, m in model.named_modules() if type(m).__name__ == "Float8Linear"]
    assert n == len(names) and names and all(name.startswith("blocks.") for name in names)
    assert type(model.lm_head).__name__ == "Linear"
    with_ffn = {name.rsplit(".", 1)[-1] for name in names}
    assert {"gate", "up", "down"} <= with_ffn


def test_fp8_callback_converts_before_the_optimizer_and_trains_emulated(tiny_dm):
    """The Lightning integration on CPU: torchao's emulated float8 (casts without fp8 GEMMs)."""
    pytest.importorskip("torchao", reason="torchao (the 'gpu' extra) is not installed")
    import lightning as L

    from bench.run.engine.fp8 import Float8Training
    from bench.run.engine.module import LMModule

    cfg = nano(**{"model.d_model": 64, "model.ref_intermediate_size": 128, "model.ffn_multiple_of": 16}).config
    module, cb = LMModule(cfg), Float8Training("tensorwise", emulate=True)
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", max_steps=3, callbacks=[cb], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, datamodule=tiny_dm)
    assert cb.converted > 0 and trainer.global_step == 3 and torch.isfinite(module.last_train_loss)
    in_opt = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert all(id(p) in in_opt for p in module.model.parameters())  # the swapped layers' weights are trained


@pytest.mark.skipif(FP8_PROBLEM is not None, reason=f"fp8 training cannot run here: {FP8_PROBLEM}")
def test_fp8_cell_trains_and_names_its_recipe(tmp_path, tiny_dm):
    cell = nano(**{"train.precision": "fp8-tensorwise", "model.d_model": 64, "model.ref_intermediate_size": 128,
                   "model.ffn_multiple_of": 16, "train.accelerator": "gpu"})
    rec = train_cell(cell, "p", tiny_dm, RunOptions(out=tmp_path, quiet=True)).to_dict()
    assert rec["status"] == "ok", rec.get("traceback")
    assert rec["fp8_recipe"] == "tensorwise" and rec["lightning_precision"] == "bf16-mixed"
    assert math.isfinite(rec["metrics"]["val_loss"])


# ---- saved weights --------------------------------------------------------------------------

@pytest.mark.parametrize("tie", [False, True])
def test_saved_weights_reload_to_identical_logits(tmp_path, tie):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(d_model=32, n_layers=2, n_heads=2, ref_intermediate_size=64,
                                          activation="powlu", gpas=True, tie_embeddings=tie)).eval()
    save_weights(model, tmp_path / "w")
    again = load_weights(tmp_path / "w")
    x = torch.randint(0, 256, (2, 24))
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert (again.lm_head.weight is again.embed.weight) == tie
    assert json.loads((tmp_path / "w" / "config.json").read_text())["model"]["activation"] == "powlu"
