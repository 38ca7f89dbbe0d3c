"""The training step without host synchronization: the device-side divergence flag gives the exact
step, progress reads no device tensor, and the compiled step has no graph break."""

from __future__ import annotations

import pytest
import torch

from bench.run.engine.callbacks import CellMetrics
from bench.run.engine.progress import CellProgress
from bench.run.config.presets import resolve
from bench.run.engine.module import LMModule, split_batch
from bench.run.config.options import RunOptions
from bench.run.engine.runner import train_cell
from tiny_data import nano_cell


STEPS = {"train.max_steps": 14, "train.val_every": 100, "data.ood_corpus": None}


def inject_nan(monkeypatch, k: int):
    """The loss of the k-th optimizer step (1-based: global_step == k - 1 inside it) becomes NaN."""
    loss = LMModule.loss

    def nan_at_k(self, x, y, reduction="mean"):
        out = loss(self, x, y, reduction)
        return out * float("nan") if self.training and self.global_step == k - 1 else out

    monkeypatch.setattr(LMModule, "loss", nan_at_k)


@pytest.mark.parametrize("k,every", [(5, 1), (5, 4), (9, 4), (13, 50)])
def test_diverged_step_is_exact_whatever_the_check_interval(tmp_path, tiny_dm, monkeypatch, k, every):
    inject_nan(monkeypatch, k)
    cell = nano_cell(STEPS, **{"train.nan_check_every": every})
    rec = train_cell(cell, "t", tiny_dm, RunOptions(out=tmp_path, quiet=True, ckpt_every=0))
    assert rec.status == "diverged", rec.error
    assert rec.diverged_step == k
    assert "nan" in rec.error


def test_nan_check_every_is_not_semantic():
    a = resolve({"scale": "nano", "train.nan_check_every": 1})
    b = resolve({"scale": "nano", "train.nan_check_every": 100})
    assert a.config_hash() == b.config_hash()


def test_finite_loss_is_read_back_only_every_n_steps(tmp_path, tiny_dm, monkeypatch):
    """The host reads the loss only at the flag read-backs; progress shows that value, never syncs."""
    reads = []
    original = CellMetrics.check_finite

    def counting(self):
        reads.append(self.batches)
        return original(self)

    monkeypatch.setattr(CellMetrics, "check_finite", counting)

    class Progress:
        def __init__(self):
            self.updates = []

        def add_task(self, *a, **k):
            return 0

        def update(self, task, **fields):
            self.updates.append(fields)

        def remove_task(self, task):
            pass

    original_float = torch.Tensor.__float__

    def no_item(self):
        import sys

        if sys._getframe(1).f_code.co_filename.endswith(("callbacks.py", "progress.py")):
            raise AssertionError("a callback read a device tensor with float()")
        return original_float(self)

    progress = Progress()
    cell = nano_cell(STEPS, **{"train.nan_check_every": 5, "train.max_steps": 12})
    monkeypatch.setattr(torch.Tensor, "__float__", no_item)  # float(loss) in a callback would fail
    rec = train_cell(cell, "t", tiny_dm, RunOptions(out=tmp_path, quiet=True, ckpt_every=0), progress)
    monkeypatch.undo()
    assert rec.status == "ok", rec.error
    assert reads[:2] == [5, 10] and reads[-1] == 12  # every 5 steps, then at the end
    shown = [(u.get("completed"), u["loss"]) for u in progress.updates if "loss" in u]
    # before the first read-back (step 5) nothing is known, so nothing is shown; after it, the value read back
    assert all(s == "-" for step, s in shown if step is not None and step < 5)
    after = [s for step, s in shown if step is not None and step > 5]
    assert after and all(s != "-" for s in after)  # CellMetrics reads back before CellProgress shows it


def test_live_progress_has_no_tensor_reads():
    import inspect

    src = inspect.getsource(CellProgress)
    assert "callback_metrics" not in src and "float(loss" not in src


STEP_CASES = [(act, norm, fused) for act in ("swiglu", "gelu", "relu2", "geglu", "polyrelu", "polynorm", "powlu",
                                                "swiglu_clip")
              for norm, fused in (("pre", "true"),)] + \
             [("swiglu", norm, "false") for norm in ("pre+gpas", "post", "sandwich", "deepnorm", "mixln", "lns")]


@pytest.mark.slow  # compiles a step per case
@pytest.mark.parametrize("activation,norm,fused", STEP_CASES, ids=[f"{a}-{n}-fused{f}" for a, n, f in STEP_CASES])
def test_training_step_forward_and_backward_have_no_graph_break(activation, norm, fused):
    """The model's forward + loss (what the compiled training step runs before logging), with the fused
    kernels and fused loss on, compiles to one graph; backward is that graph's AOT backward. Two layers
    (Mix-LN: four, one post-LN and three pre-LN): every layer is one block type, traced in turn."""
    cfg = resolve({"scale": "nano", "activation": activation, "norm": norm, "model.kernels": "fused",
                   "train.fused_loss": fused, "model.n_layers": 4 if norm == "mixln" else 2})
    module = LMModule(cfg)
    x, y = split_batch(torch.randint(0, 256, (2, 17)))
    # fullgraph=True raises at the first graph break; the counter sees how many graphs were made
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    loss = torch.compile(module.loss, backend=counter, fullgraph=True)(x, y)
    loss.backward()  # the AOT backward of that one graph
    assert counter.frame_count == 1
    torch.testing.assert_close(loss, module.loss(x, y))
    assert all(p.grad is not None for p in module.model.parameters() if p.requires_grad)


def test_cost_table_on_cpu_is_written_as_cpu(tmp_path):
    """`bench cost` at nano scale on CPU: every row measured, ratios against swiglu, the table under
    cpu/ (never gpu/) with the device's name and the FLOP-counter note."""
    import json

    from bench.cli import main

    rc = main(["cost", "--scale", "nano", "--activation", "swiglu,polynorm,powlu", "--steps", "2", "--warmup", "1",
               "--out", str(tmp_path), "--name", "t", "--recipe", "cpu", "--data.tokenizer", "bytes",
               "--train.batch_size", "2"])
    assert rc == 0
    assert not (tmp_path / "gpu").exists()
    table = json.loads((tmp_path / "cpu" / "t" / "cost.json").read_text())
    assert table["device_kind"] == "cpu" and "CPU" in table["device"]
    rows = {(r["activation"], r["kernels"]): r for r in table["rows"]}
    assert set(rows) == {(a, k) for a in ("swiglu", "polynorm", "powlu") for k in ("reference", "fused")}
    assert rows[("swiglu", "fused")]["step_time_vs_swiglu"] == 1.0
    assert all(r["tokens_per_sec"] > 0 and r["mfu"] > 0 and r["flops_per_step"] > 0 for r in rows.values())
    md = (tmp_path / "cpu" / "t" / "cost.md").read_text()
    assert "LM head and loss included" in md and table["device"] in md


def test_cost_require_gpu_refuses_on_cpu(tmp_path):
    from bench.cli import main

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["cost", "--scale", "nano", "--require-gpu", "--out", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_compiled_cell_trains_through_the_runner(tmp_path, tiny_dm):
    """train.compile=true compiles the LightningModule (Lightning's way) and a cell trains to the same
    kind of record; logging and metric updates run eagerly beside the compiled step."""
    cell = nano_cell(STEPS, **{"train.compile": "true", "train.max_steps": 4, "train.val_every": 2,
                        "train.fused_loss": "true"})
    rec = train_cell(cell, "t", tiny_dm, RunOptions(out=tmp_path, quiet=True, ckpt_every=0))
    assert rec.status == "ok", rec.error
    assert rec.config["train"]["compile"] == "true" and rec.metrics.val_loss > 0
