"""The parts of scripts/device-check.sh, one per call, each writing its one result file (JSON, flat in
the results folder) as soon as it has something: `probe`, `overhead`, `cost`, `summary`.

    python scripts/device_check.py probe OUT [--dry-run]
    python scripts/device_check.py overhead OUT --scale gpas-71m [--dry-run]
    python scripts/device_check.py cost OUT --scale gpas-71m --activation swiglu,polynorm --name cost-71m
    python scripts/device_check.py summary OUT

--dry-run: nano scale, tiny step counts, CPU allowed (CI runs it so the script cannot rot).
A part exits 1 when any of its rows failed (each failure printed as one line); its file keeps the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.atomic import atomic_write, atomic_write_json  # noqa: E402

BATCH = 64  # sequences per step at gpas scales: 16k tokens, fits any GPU, a few seconds per row


def device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def timed(fn, reps: int = 10) -> float:
    """Median seconds of fn() after one warm-up call, the device synchronized around each."""
    fn()
    times = []
    for _ in range(reps):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "cuda": torch.version.cuda}
    for name in ("torch", "triton", "lightning", "litdata", "torchao", "boto3", "requests", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def attention_backends(dev, dtype) -> dict:
    """Which SDPA backends run at an LLM-like shape (bf16, head_dim 64, causal), each alone, and the
    time of the default choice."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import torch.nn.functional as F

    q = torch.randn(4, 8, 256, 64, device=dev, dtype=dtype)
    out = {}
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                    SDPBackend.MATH):
        try:
            with sdpa_kernel(backend):
                F.scaled_dot_product_attention(q, q, q, is_causal=True)
            out[backend.name] = "ok"
        except Exception as e:  # noqa: BLE001 - a backend that cannot run is the answer
            out[backend.name] = f"unavailable: {type(e).__name__}"
    out["default_ms"] = 1e3 * timed(lambda: F.scaled_dot_product_attention(q, q, q, is_causal=True))
    return out


def fast_vs_reference(dev, d_model: int, hidden: int, tokens: int) -> dict:
    """PolyNorm, PowLU and the chunked LM-head loss in bf16: fast path against the reference (fp32
    reference values), max relative error of output and input gradient, and fwd+bwd time of each."""
    from models import activations as A
    from models.kernels import linear_cross_entropy, polynorm_fused, powlu_fused, reference_linear_cross_entropy

    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(tokens, hidden, device=dev, generator=g)
    u = torch.randn(tokens, hidden, device=dev, generator=g)
    w, b = torch.full((3,), 1 / 3, device=dev), torch.zeros(1, device=dev)
    h = torch.randn(tokens, d_model, device=dev, generator=g)
    head = torch.randn(32000 if dev.type == "cuda" else 512, d_model, device=dev, generator=g) / d_model**0.5
    y = torch.randint(0, head.shape[0], (tokens,), device=dev, generator=g)
    cases = {
        "polynorm": (lambda x, u: A.polynorm(x, w, b), lambda x, u: polynorm_fused(x, w, b)),
        "powlu": (lambda x, u: A.powlu(x, u, 3.0), lambda x, u: powlu_fused(x, u, 3.0)),
        "chunked_loss": (lambda x, u: reference_linear_cross_entropy(x, head.to(x.dtype), y),
                         lambda x, u: linear_cross_entropy(x, head.to(x.dtype), y)),
    }
    if dev.type == "cuda":
        from models.kernels.triton_polynorm import polynorm_triton
        cases["polynorm_triton"] = (cases["polynorm"][0], lambda x, u: polynorm_triton(x, w, b))
    out = {}
    for name, (ref, fast) in cases.items():
        a = h if name == "chunked_loss" else x
        try:
            out[name] = compare(ref, fast, a, u)
        except Exception as e:  # noqa: BLE001 - one failing kernel must not hide the others
            out[name] = {"error": failure(e)}
    return out


def failure(e: Exception) -> str:
    """One line for a row's result, printed too (device-check.sh reports a failed part's last such line)."""
    line = " ".join(f"{type(e).__name__}: {e}".split())
    print(line, file=sys.stderr)
    return line


def peaks(dev: torch.device, name: str) -> dict:
    """The MFU peak of each precision the check reports, chosen by the device name it prints."""
    from bench.run.engine.system import available_flops

    out = {}
    for precision in ("bf16-true", "bf16-mixed", "fp8"):
        peak, basis = available_flops(dev, precision, name=name)
        out[f"mfu_peak_{precision}"] = {"flops": peak, "basis": basis}
    return out


def compare(ref, fast, a, u) -> dict:
    def run(fn, dtype):
        aa = a.detach().to(dtype).requires_grad_(True)
        uu = u.detach().to(dtype)
        o = fn(aa, uu)
        o.float().sum().backward()
        return o.detach().float(), aa.grad.float()

    want, want_grad = run(ref, torch.float32)
    got, got_grad = run(fast, torch.bfloat16)
    rel = lambda p, q: float((p - q).abs().max() / q.abs().max().clamp(min=1e-12))  # noqa: E731
    step = lambda fn: (lambda: run(fn, torch.bfloat16))  # noqa: E731
    return {"out_rel_err": rel(got, want), "grad_rel_err": rel(got_grad, want_grad),
            "reference_bf16_ms": 1e3 * timed(step(ref), 5), "fast_bf16_ms": 1e3 * timed(step(fast), 5)}


def probe(out: Path, args) -> int:
    from bench.run.config.presets import resolve
    from bench.run.engine.system import cpu_matmul_peak, cuda_matmul_peak, device_name

    dev = device()
    res = {"versions": versions(), "device": device_name(dev), "torch_threads": torch.get_num_threads()}
    print(f"device: {res['device']}")
    atomic_write_json(out / "probe.json", res)  # something survives even a crash below
    res.update(peaks(dev, res["device"]))
    if dev.type == "cuda":
        res["capability"] = list(torch.cuda.get_device_capability(dev))
        res["measured_bf16_matmul_flops"] = cuda_matmul_peak(dev, torch.bfloat16, n=1024 if args.dry_run else 8192)
    else:
        res["measured_fp32_matmul_flops"] = cpu_matmul_peak(256, 0.2)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    res["attention"] = attention_backends(dev, dtype)
    atomic_write_json(out / "probe.json", res)
    m = resolve({"scale": args.scale, "recipe": "gpas"}).model
    tokens = 256 if args.dry_run else BATCH * m.block_size // 4
    res["fast_vs_reference"] = fast_vs_reference(dev, m.d_model, m.intermediate_size or m.ref_intermediate_size, tokens)
    atomic_write_json(out / "probe.json", res)
    return sum("error" in r for r in res["fast_vs_reference"].values())


def overhead(out: Path, args) -> int:
    from bench.run.config.presets import resolve
    from bench.run.config.matrix import Cell, cell_id
    from bench.run.tools.overhead import measure

    settings = {"scale": args.scale, "activation": "swiglu", "norm": "pre", "train.max_steps": args.steps,
                "train.throughput_warmup": min(10, args.steps // 3), **overrides(args)}
    cfg = resolve(settings)
    res = {"scale": args.scale, "steps": args.steps, "settings": settings, "compile": cfg.train.compile}
    res.update(measure(Cell(cell_id(cfg, {}), cfg, ()), repeats=1))
    atomic_write_json(out / "overhead.json", res)
    return 0


def overrides(args) -> dict:
    if args.dry_run:
        return {"recipe": "cpu", "train.batch_size": 2, "data.tokenizer": "bytes", "train.val_every": 10**6}
    return {"recipe": "gpas", "train.batch_size": BATCH}


def cost(out: Path, args) -> int:
    """Row after row, the file rewritten after each: a timeout loses only the row it interrupts."""
    from bench.run.tools.cost import add_ratios, measure_row

    path, rows = out / f"{args.name}.json", []
    for kernels in args.kernels.split(","):
        for act in args.activation.split(","):
            settings = {**overrides(args), "scale": args.scale, "activation": act, "model.kernels": kernels}
            if args.dry_run:
                settings["model.block_size"] = 32
            try:
                rows.append(measure_row(settings, args.steps, args.warmup))
            except Exception as e:  # noqa: BLE001 - an OOM or a kernel failure is a row's result
                rows.append({"scale": args.scale, "activation": act, "kernels": kernels,
                             "error": failure(e), "traceback": traceback.format_exc()[-2000:]})
            done = [r for r in rows if "error" not in r]
            add_ratios(done)
            atomic_write_json(path, {"scale": args.scale, "steps": args.steps, "warmup": args.warmup, "rows": rows})
    return sum("error" in r for r in rows)


def summary(out: Path, args) -> int:
    """One table of everything that finished, printed and written as summary.md."""
    def load(name):
        p = out / name
        return json.loads(p.read_text()) if p.exists() else None

    lines = ["| part | figure | value |", "|---|---|---|"]
    p = load("probe.json")
    if p:
        lines.append(f"| probe | device | {p.get('device')} (torch {p['versions'].get('torch')}) |")
        peak = p.get("mfu_peak_bf16-true") or {}
        tflops = (peak.get('flops') or 0) / 1e12
        lines.append(f"| probe | MFU peak (bf16) | {tflops:.1f} TFLOP/s: {peak.get('basis')} |")
        measured = p.get("measured_bf16_matmul_flops") or p.get("measured_fp32_matmul_flops") or 0
        lines.append(f"| probe | measured matmul peak | {measured / 1e12:.1f} TFLOP/s |")
        for name, r in (p.get("fast_vs_reference") or {}).items():
            value = r.get("error") or (f"out err {r['out_rel_err']:.2e}, grad err {r['grad_rel_err']:.2e}, "
                                       f"{r['reference_bf16_ms']:.2f} -> {r['fast_bf16_ms']:.2f} ms")
            lines.append(f"| probe | {name} fast vs reference | {value} |")
    else:
        lines.append("| probe | - | no result |")
    o = load("overhead.json")
    if o:
        lines.append(f"| overhead | harness / bare step time | {o['step_time_ratio']:.3f} ({o['harness_median']:,.0f} "
                     f"vs {o['bare_median']:,.0f} tok/s; {len(o['pair_ratios'])} pair(s): {o['verdict']}; "
                     f"+{o['added_ms_per_step']:.2f} ms a step) |")
    else:
        lines.append("| overhead | - | no result |")
    for name in sorted(f.name for f in out.glob("cost-*.json")):
        for r in load(name)["rows"]:
            what = f"{r['scale']} {r['activation']} {r['kernels']}"
            if "error" in r:
                lines.append(f"| {name[:-5]} | {what} | {r['error'][:80]} |")
                continue
            mfu = f"{100 * r['mfu']:.1f}% MFU" if r.get("mfu") is not None else "MFU -"
            ratio = r.get("step_time_vs_swiglu")
            lines.append(f"| {name[:-5]} | {what} | {r['tokens_per_sec']:,.0f} tok/s, {mfu}, "
                         f"{r['peak_memory_bytes'] / 2**30:.2f} GiB" + (f", {ratio:.2f}x swiglu |" if ratio else " |"))
    text = "\n".join(lines) + "\n"
    atomic_write(out / "summary.md", text)
    print(text)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["probe", "overhead", "cost", "summary"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--scale", default="gpas-71m")
    parser.add_argument("--activation", default="swiglu,polynorm,powlu,gelu")
    parser.add_argument("--kernels", default="reference,fused")
    parser.add_argument("--name", default="cost-71m")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    if args.dry_run:
        args.scale = "nano"
        torch.set_num_threads(min(2, torch.get_num_threads()))
    args.out.mkdir(parents=True, exist_ok=True)
    failed = {"probe": probe, "overhead": overhead, "cost": cost, "summary": summary}[args.part](args.out, args)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
