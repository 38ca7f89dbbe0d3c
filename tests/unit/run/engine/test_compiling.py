"""torch.compile in the harness (bench/run/engine/compiling.py): every cost row and every cell compiles from a
clean cache, however many came before in the process; regional compilation compiles one graph for
identical blocks, trains the same numbers as eager, and leaves the eager paths (validation, probes)
and the parameter names alone. Compiled with dynamo's "eager" backend: its tracing, guards and caches
are the real ones, without Inductor's code generation."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from bench.run.engine import compiling
from bench.run.config.presets import resolve
from bench.run.engine.module import LMModule

# ten differently built models: each one fails the last one's guards, so each needs its own graph
ACTS = ("swiglu", "gelu", "relu2", "polyrelu", "polynorm", "powlu", "swiglu_clip", "relu", "silu", "geglu")


@pytest.fixture(autouse=True)
def eager_backend(monkeypatch):
    monkeypatch.setattr(compiling, "BACKEND", "eager")
    yield
    torch._dynamo.reset()


def tiny(**settings):
    return {"scale": "nano", "recipe": "cpu", "train.batch_size": 2, "model.block_size": 16, **settings}


@pytest.mark.slow  # compiles every cost row
@pytest.mark.parametrize("how", ["whole", "regional"])
def test_every_cost_row_compiles_past_the_recompile_limit(how):
    """More than recompile_limit (8) cost rows in one process: the last one still compiles its own
    graph (dynamo's counters) instead of running eagerly under a "compile" label."""
    # at dynamo's default: an earlier test's regional compile may have raised it for the whole process
    with torch._dynamo.config.patch(recompile_limit=8):
        compile_every_cost_row(how)


def compile_every_cost_row(how):
    from bench.run.tools.cost import measure_row

    assert len(ACTS) > torch._dynamo.config.recompile_limit
    for act in ACTS:
        counters.clear()
        row = measure_row(tiny(**{"activation": act, "train.compile": how}), steps=1, warmup=0)
        assert row["compile"] == how
        assert counters["stats"]["unique_graphs"] >= 1, f"{act}: nothing compiled"
        assert not any("recompile limit" in k.lower() for k in counters["unimplemented"]), act
        assert row["compiled_graphs"] >= 1


@pytest.mark.slow
def test_every_cell_compiles_past_the_recompile_limit(tmp_path, tiny_dm):
    """More cells than the recompile limit, trained by the runner in one process, each compiled: the
    last one compiles too. The limit is lowered to 3 (4 cells) from dynamo's 8 (9 cells, twice the
    time): what is tested is the count past the limit, not the limit's value."""
    from bench.run.config.matrix import Cell, cell_id
    from bench.run.config.options import RunOptions
    from bench.run.engine.runner import train_cell

    with torch._dynamo.config.patch(recompile_limit=3):
        for act in ACTS[:4]:
            cfg = resolve(tiny(**{"activation": act, "train.compile": "whole", "train.max_steps": 2,
                                  "train.val_every": 2, "train.probe_every": 0, "model.block_size": 64}))
            counters.clear()
            rec = train_cell(Cell(cell_id(cfg, {}), cfg, ()), "t", tiny_dm,
                             RunOptions(out=tmp_path, quiet=True, ckpt_every=0))
            assert rec.status == "ok", rec.error
            assert counters["stats"]["unique_graphs"] >= 1, f"{act}: nothing compiled"
            assert not any("recompile limit" in k.lower() for k in counters["unimplemented"]), act


@pytest.mark.parametrize("norm", ["pre", "lns", "mixln", "deepnorm+gpas"])
def test_regional_compiles_identical_blocks_once(norm):
    """Twelve blocks, one graph per distinct block type (Mix-LN: post and pre), no graph break, and
    the loss and gradients of the eager model."""
    cfg = resolve(tiny(**{"norm": norm, "model.n_layers": 12, "train.compile": "regional"}))
    torch.manual_seed(0)
    eager = LMModule(cfg)
    module = LMModule(cfg)
    module.load_state_dict(eager.state_dict())
    loss_fn = compiling.loss_fn(module, cfg)
    x = torch.randint(0, 256, (2, 16))
    loss = loss_fn(x, x)
    loss.backward()
    ref = eager.loss(x, x)
    ref.backward()
    counts = compiling.graph_counts()
    assert counts["graphs"] == (2 if norm == "mixln" else 1)
    assert counts["graph_breaks"] == 0 and counts["recompile_limit_hits"] == 0
    torch.testing.assert_close(loss, ref)
    for (name, p), q in zip(eager.named_parameters(), module.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_regional_leaves_names_and_eval_paths_eager():
    cfg = resolve(tiny(**{"train.compile": "true"}))
    module = LMModule(cfg)
    names = [n for n, _ in module.named_parameters()]
    fit = compiling.for_fit(module, cfg)
    assert fit is module and [n for n, _ in module.named_parameters()] == names
    assert list(module.state_dict()) == list(LMModule(cfg).state_dict())
    x = torch.randint(0, 256, (2, 16))
    module.eval()
    with torch.no_grad():
        module.loss(x, x)
    assert compiling.graph_counts()["graphs"] == 0  # validation and probes run the blocks eagerly
    module.train()
    module.loss(x, x)
    assert compiling.graph_counts()["graphs"] == 1


@pytest.mark.parametrize("value,on_cuda,expected", [
    ("true", False, "regional"), ("regional", False, "regional"), ("whole", False, "whole"),
    ("false", True, None), ("auto", False, None), ("auto", True, "regional")])
def test_compile_modes(monkeypatch, value, on_cuda, expected):
    import bench.run.config.device as device

    cfg = resolve(tiny(**{"train.compile": value}))
    monkeypatch.setattr(device, "on_cuda", lambda cfg: on_cuda)
    assert compiling.mode(cfg) == expected


def test_bad_compile_value_names_the_choices():
    from models import UnknownName

    with pytest.raises(UnknownName, match="Did you mean 'regional'.*auto, true, false, regional, whole"):
        resolve(tiny(**{"train.compile": "regoinal"}))
