"""bench/launch/memory.py: the traced estimate against the CPU's own allocation and the committed GPU
records, the recipe hint, and the closed formula (the fallback) against a hand computation."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


from bench.cli import main
from bench.launch.memory import GPUS, OVERHEAD, estimate, formula_estimate, suggest_recipe, too_big, warn_too_big
from bench.run.config.presets import resolve
from bench.run.config.matrix import Cell


def nano(**train):
    return resolve({"scale": "nano", "activation": "swiglu", "norm": "pre",
                    **{f"train.{k}": v for k, v in train.items()}})


def test_nano_swiglu_by_hand():
    # nano: d=40, L=4, 4 heads (kv = d), SwiGLU h=108, V=256 untied, b=8, s=64, fp32
    attention = 4 * (2 * 40 * 40 + 2 * 40 * 40)  # q, o: d x d; k, v: d x kv
    ffn = 4 * 3 * 40 * 108
    norms = (4 * 2 + 1) * 40
    embedding = 2 * 256 * 40
    P = attention + ffn + norms + embedding
    assert P == 98280
    acts = 8 * 64 * 4 * (6 * 40 + 2 * 40 + 3 * 108) * 4 + 8 * 64 * 256 * (4 + 4)
    e = formula_estimate(nano())
    assert (e.weights, e.gradients, e.optimizer) == (4 * P, 4 * P, 8 * P)
    assert e.activations == acts == 6_324_224
    assert e.total == 16 * P + acts + OVERHEAD
    # without a fused attention kernel the probabilities b * heads * s^2 * L are kept too
    assert formula_estimate(nano(), flash=False).activations == acts + 8 * 4 * 64 * 64 * 4 * 4


def test_precision_and_fsdp_sharding():
    P = 98280
    e = formula_estimate(nano(precision="bf16-true"))
    assert (e.weights, e.optimizer) == (2 * P, 4 * P)
    assert e.activations == 8 * 64 * 4 * 644 * 2 + 8 * 64 * 256 * (2 + 4)
    mixed = formula_estimate(nano(precision="bf16-mixed"))
    assert mixed.weights == 4 * P and mixed.activations == e.activations
    fsdp = formula_estimate(nano(strategy="fsdp", devices="4"))
    assert fsdp.weights == 4 * P // 4 and fsdp.optimizer == 8 * P // 4
    assert formula_estimate(nano(strategy="ddp", devices="4")).weights == 4 * P  # DDP replicates
    traced, sharded = estimate(nano(fused_loss="false")), estimate(nano(strategy="fsdp", devices="4"))
    assert sharded.weights == traced.weights // 4 and sharded.activations == traced.activations


@pytest.mark.slow  # traces or trains real models: 15-75 s
def test_too_big_names_the_cell():
    big = resolve({"scale": "gpas-7b", "activation": "swiglu", "norm": "pre"})
    cells = [Cell("nano", nano(), ()), Cell("7b", big, ())]
    # 7B: 16 bytes/param of fp32 weights, grads and Adam states alone are > 100 GB
    assert [cid for cid, _ in too_big(cells, "h100-80gb")] == ["7b"]
    assert too_big(cells, None) == []
    assert estimate(big).total > GPUS["h200-141gb"]


def test_plan_gpu_flag(capsys):
    assert main(["plan", "--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--gpu", "t4-16gb"]) == 0
    assert "fits t4-16gb" in capsys.readouterr().out
    assert main(["plan", "--scale", "nano", "--gpu", "h100"]) == 2
    assert "h100-80gb" in capsys.readouterr().err


# ---- the traced estimate ---------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[3]
MEASURE = textwrap.dedent("""
    import gc, resource, sys, torch
    from bench.run.engine.builders import build_optimizer
    from bench.run.config.presets import resolve
    from bench.run.engine.module import lm_loss
    from models import Transformer

    torch.set_num_threads(1)
    cfg = resolve({"scale": sys.argv[1], "activation": sys.argv[2], "norm": "pre"})
    m, t = cfg.model, cfg.train
    x = torch.randint(0, m.vocab_size, (t.batch_size, m.block_size))

    def steps(b):
        model = Transformer(m)
        opt = build_optimizer(model, t)
        for _ in range(2):
            lm_loss(model(x[:b]), x[:b]).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    def peak():  # the resident set's high-water mark, in bytes
        line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024

    steps(1)  # the kernels' code pages are loaded before the baseline
    gc.collect()
    base = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
    # not ru_maxrss: it keeps the launching process's peak (Linux carries it across fork and exec), and a
    # test suite's process is bigger than this one's; writing 5 to clear_refs resets the high-water mark
    open("/proc/self/clear_refs", "w").write("5")
    steps(t.batch_size)
    print(peak() - base)
""")


def measured_cpu_peak(scale: str, activation: str) -> int:
    """Bytes the process's resident set grew by over two training steps, in a fresh process; a fixed
    mmap threshold makes glibc return every large block when it is freed, as the tracker counts."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "LITDATA_DISABLE_VERSION_CHECK": "1"}
    out = subprocess.run([sys.executable, "-c", MEASURE, scale, activation], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    return int(out.stdout.split()[-1])


PROC = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads the resident set from /proc")


def traced_over_measured(scale: str, activation: str) -> float:
    est = estimate(resolve({"scale": scale, "activation": activation, "norm": "pre", "train.fused_loss": "false"}))
    assert est.basis == "traced"
    return (est.total - est.overhead) / measured_cpu_peak(scale, activation)


@pytest.mark.slow  # traces or trains real models: 15-75 s
@PROC
@pytest.mark.parametrize("scale,activation", [("micro", "swiglu"), ("micro", "powlu")])
def test_traced_estimate_matches_the_cpu_allocation(scale, activation):
    ratio = traced_over_measured(scale, activation)
    assert 0.85 <= ratio <= 1.15, ratio  # measured 1.00 at micro swiglu and small swiglu


@pytest.mark.slow  # traces or trains real models: 15-75 s
@PROC
def test_the_cpu_measurement_ignores_the_launching_process_s_peak():
    ballast = b"\1" * 2**30  # a test suite's process, grown past the measured one's peak (~0.35 GiB)
    ratio = traced_over_measured("micro", "swiglu")
    del ballast
    assert 0.85 <= ratio <= 1.15, ratio


def record_cells():
    """(name, cfg as the record ran it with the eager reference code, measured peak) of the committed
    H100 records (results/gpu/gpu-71m), compiled cells apart (compile is not modelled)."""
    for d in sorted((ROOT / "results" / "gpu" / "gpu-71m").glob("gpas-71m-*")):
        rec = json.loads((d / "record.json").read_text())
        t, m = rec["config"]["train"], rec["config"]["model"]
        if t["compile"] not in (False, "false"):
            continue
        cfg = resolve({"scale": "gpas-71m", "activation": m["activation"], "norm": "pre+gpas" if m["gpas"] else "pre",
                       "train.batch_size": t["batch_size"], "train.grad_accum": t["grad_accum"],
                       "train.precision": t["precision"], "train.optimizer": t["optimizer"],
                       "model.kernels": "reference", "train.fused_loss": "false"})
        yield d.name, cfg, rec["metrics"]["peak_memory_bytes"]


@pytest.mark.slow  # traces or trains real models: 15-75 s
def test_traced_estimate_matches_the_gpu_records():
    ratios = {}
    for name, cfg, measured in record_cells():
        est = estimate(cfg, flash=True)
        assert est.basis == "traced"
        ratios[name.split("-s0")[0]] = est.total / measured  # 1 GiB of CUDA context on top of max allocated
    assert {"gpas-71m-swiglu-pre", "gpas-71m-polynorm-pre", "gpas-71m-powlu-pre"} <= set(ratios)
    assert all(0.85 <= r <= 1.15 for r in ratios.values()), ratios  # measured 1.02 to 1.05


@pytest.mark.slow  # traces or trains real models: 15-75 s
def test_the_activation_changes_the_estimate():
    def at(activation):
        return estimate(resolve({"scale": "gpas-71m", "activation": activation, "norm": "pre", "recipe": "gpas",
                                 "train.batch_size": 128, "model.kernels": "reference", "train.fused_loss": "false"}))

    swiglu, polynorm, powlu = at("swiglu"), at("polynorm"), at("powlu")
    assert powlu.activations > 1.6 * swiglu.activations  # measured 39.4 against 21.8 GiB
    assert polynorm.activations < swiglu.activations  # 20.7 against 21.8 GiB
    assert powlu.weights == pytest.approx(swiglu.weights, rel=0.01)  # the same parameter budget


def test_a_moe_counts_every_expert_and_an_untraceable_model_falls_back(monkeypatch):
    import bench.launch.memory as memory

    moe = estimate(resolve({"scale": "nano-moe", "activation": "swiglu", "norm": "pre"}))
    P = memory.count_params(resolve({"scale": "nano-moe"}).model).total
    assert moe.optimizer >= 2 * 4 * P  # Adam states for every expert, not just the one the trace ran
    monkeypatch.setattr(memory, "_TRACES", {})
    monkeypatch.setattr("bench.launch.memory_trace.traced_peak", lambda *a, **k: 1 / 0)
    fallback = estimate(nano())
    assert fallback.basis.startswith("formula (trace failed: ZeroDivisionError")
    assert fallback.total == formula_estimate(nano()).total


# ---- the recipe hint --------------------------------------------------------------------------

def test_suggest_recipe_names_the_recipe_a_gpu_scale_is_meant_for():
    def cells(**settings):
        cfg = resolve({"activation": "swiglu", "norm": "pre", **settings})
        return [Cell("c", cfg, ())]

    hint = suggest_recipe(cells(scale="gpas-71m"), "h100-80gb")
    assert hint is not None and "--recipe gpas`" in hint and "gpas-71m" in hint
    assert "--recipe polycom-moe`" in suggest_recipe(cells(scale="polycom-moe"), "h100-80gb")
    assert "--recipe polycom`" in suggest_recipe(cells(scale="polycom-1b"), "h100-80gb")
    assert suggest_recipe(cells(scale="gpas-71m"), None) is None  # no GPU named
    assert suggest_recipe(cells(scale="gpas-71m", recipe="gpas"), "h100-80gb") is None  # already chosen
    assert suggest_recipe(cells(scale="gpas-71m", **{"train.precision": "bf16-mixed"}), "h100-80gb") is None
    assert suggest_recipe(cells(scale="micro"), "h100-80gb") is None  # a CPU scale


def test_warn_too_big_prints_the_hint_once(monkeypatch):
    from rich.console import Console
    import bench.launch.memory as memory

    monkeypatch.setattr(memory, "too_big", lambda cells, gpu: [])  # the hint alone, no trace needed
    console = Console(record=True, width=300)
    cfg = resolve({"scale": "gpas-71m", "activation": "swiglu", "norm": "pre"})
    warn_too_big([Cell("a", cfg, ()), Cell("b", cfg, ())], "h100-80gb", console)
    text = console.export_text()
    assert text.count("--recipe gpas`") == 1
