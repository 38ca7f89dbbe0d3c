"""`bench cost`: what each activation costs through its reference and its fast path.

For every scale x activation x path (model.kernels 'reference' or 'fused'), a bare training loop (the
harness's loss path, optimizer, precision and compilation; random tokens, so no data preparation)
runs ``warmup`` untimed steps and ``steps`` timed ones, synchronizing the device only at the two
ends. Columns: tokens/s, MFU (PyTorch's FlopCounterMode count of forward + backward, LM head and
loss included, the same count `bench run` uses, over the device's peak), peak memory, and step
time and memory as ratios to SwiGLU through the same path. Writes ``<out>/<gpu|cpu>/<name>/cost.md``
and ``cost.json`` with the device's name and the date: numbers measured on a CPU are never written
under a gpu folder.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import torch

from ...atomic import atomic_write, atomic_write_json

ACTIVATIONS = ("swiglu", "gelu", "relu2", "polyrelu", "polynorm", "powlu", "swiglu_clip")
SCALES = ("gpas-71m", "gpas-350m")
PATHS = ("reference", "fused")


def measure_row(settings: dict, steps: int, warmup: int) -> dict:
    """One bare training loop (bench/run/tools/bare.py) on random tokens; tokens/s, MFU and peak memory on
    the run's device. Compiled as train.compile says, from a clean dynamo cache (every row compiles)."""
    from ..config.device import root_device
    from .bare import random_batches, timed_loop
    from ..engine.callbacks import flops_per_batch
    from ..engine.compiling import graph_counts, mode
    from ..config.presets import resolve
    from ..engine.system import available_flops, device_name, peak_memory, reset_peak_memory

    cfg = resolve(settings)
    t, m = cfg.train, cfg.model
    device = root_device(cfg)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    reset_peak_memory(device)
    run = timed_loop(cfg, random_batches(cfg, device), steps, warmup, device)
    seconds = run["step_seconds"]
    mem, mem_basis = peak_memory(device)
    flops = flops_per_batch(m, t.batch_size, m.block_size) * t.grad_accum
    peak, peak_basis = available_flops(device, t.precision)
    return {"scale": cfg.scale, "activation": m.activation, "kernels": m.kernels, "batch_size": t.batch_size,
            "block_size": m.block_size, "precision": t.precision, "compile": mode(cfg) or False,
            "compiled_graphs": graph_counts()["graphs"], "fused_loss": run["module"].fused_loss,
            "step_seconds": seconds, "tokens_per_sec": run["tokens_per_sec"], "flops_per_step": flops,
            "mfu": flops / seconds / peak if peak else None, "peak_flops_basis": peak_basis,
            "peak_memory_bytes": mem, "peak_memory_basis": mem_basis, "device": device_name(device),
            "final_loss": run["final_loss"]}


def add_ratios(rows: list[dict]) -> None:
    """Step time and peak memory over SwiGLU's at the same scale and path."""
    base = {(r["scale"], r["kernels"]): r for r in rows if r["activation"] == "swiglu"}
    for r in rows:
        b = base.get((r["scale"], r["kernels"]))
        r["step_time_vs_swiglu"] = r["step_seconds"] / b["step_seconds"] if b else None
        r["memory_vs_swiglu"] = r["peak_memory_bytes"] / b["peak_memory_bytes"] if b else None


def to_markdown(table: dict) -> str:
    rows = table["rows"]
    lines = [f"# Activation cost: {table['device']}", "",
             f"Measured {table['date']} on **{table['device']}** ({table['device_kind']}), "
             f"torch {table['torch']}, commit {table['commit'] or '?'}. Command: `{table['command']}`", "",
             "| scale | activation | kernels | tokens/s | MFU | peak memory (GiB) | step time vs swiglu "
             "| memory vs swiglu |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        ratio = lambda v: f"{v:.2f}x" if v is not None else "-"  # noqa: E731
        lines.append(f"| {r['scale']} | {r['activation']} | {r['kernels']} | {r['tokens_per_sec']:,.0f} | {mfu} | "
                     f"{r['peak_memory_bytes'] / 2**30:.2f} | {ratio(r['step_time_vs_swiglu'])} | "
                     f"{ratio(r['memory_vs_swiglu'])} |")
    first = rows[0] if rows else {}
    lines += ["", f"{table['steps']} timed steps after {table['warmup']} untimed ones, one micro-batch per step "
              f"({first.get('batch_size')} x {first.get('block_size')} tokens, {first.get('precision')}, compile "
              f"{first.get('compile')}, fused loss {first.get('fused_loss')}), random tokens; the device is "
              "synchronized only at the ends of the timed window.",
              "MFU: FLOPs of forward + backward counted by PyTorch's FlopCounterMode (LM head and loss included, "
              f"the count `bench run` uses), over {first.get('peak_flops_basis')}.",
              f"Peak memory: {first.get('peak_memory_basis')}. Ratios are against SwiGLU at the same scale through "
              "the same kernels path (the target: at most 1.10x for each fast path).",
              "kernels: 'reference' = the plain-torch formulas of models/activations.py; 'fused' = models/kernels "
              "(custom autograd Functions for PolyNorm and PowLU, torch.compile for the elementwise ones)."]
    return "\n".join(lines) + "\n"


def run_cost(scales, activations, paths, steps: int, warmup: int, overrides: dict, progress=None) -> dict:
    from ..engine.system import device_name, git_state

    rows = []
    for scale in scales:
        for path in paths:
            for act in activations:
                settings = {"recipe": "gpas", "scale": scale, **overrides, "activation": act, "model.kernels": path}
                if progress:
                    progress(f"{scale} {act} {path}")
                try:
                    rows.append(measure_row(settings, steps, warmup))
                except torch.OutOfMemoryError:
                    rows.append({"scale": scale, "activation": act, "kernels": path, "error": "out of memory"})
    done = [r for r in rows if "error" not in r]
    add_ratios(done)
    cuda = any("cuda" in str(r.get("peak_memory_basis", "")) for r in done)
    device = done[0]["device"] if done else device_name(torch.device("cpu"))
    return {"device": device, "device_kind": "gpu" if cuda else "cpu",
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
            "commit": git_state()["commit"], "steps": steps, "warmup": warmup, "rows": done,
            "failed": [r for r in rows if "error" in r]}


def write_table(table: dict, out: Path, name: str) -> Path:
    """<out>/<gpu|cpu>/<name>/cost.{md,json}: the device kind decides the folder."""
    folder = Path(out) / table["device_kind"] / name
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "cost.json", table)
    atomic_write(folder / "cost.md", to_markdown(table))
    return folder
