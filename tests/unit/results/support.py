"""What the results tests share: synthetic records whose answers are known, written as a matrix folder
(records and curves) the way `bench run` leaves one, and readers of the LaTeX output."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import numpy as np

from bench.results.curves import parse_curve
from bench.results.records import Metrics, Params, Record
from bench.results.render import SPECIAL

SCALES = {"nano": 10_000, "micro": 80_000}  # non-embedding parameters
ACTS = ("swiglu", "powlu")
NORMS = ("pre", "pre+gpas")
IMG = '<img alt="'  # every figure: <img alt="..." src="data:image/png;base64,...">
DATA_URI = 'src="data:image/png;base64,'


def final_loss(scale, act, norm, seed):
    """swiglu/pre+gpas clearly better and powlu/pre clearly worse than swiglu/pre at each scale."""
    base = 3.0 * (SCALES[scale] / 10_000) ** -0.1
    shift = {("swiglu", "pre"): 0.0, ("swiglu", "pre+gpas"): -0.2, ("powlu", "pre"): 0.3,
             ("powlu", "pre+gpas"): 0.01}[(act, norm)]
    return base + shift + 0.01 * (seed - 1)


def probes(n_layers=2, gpas=False):
    steps = [0, 10, 20, 30]
    per_block = [[0.1 * (i + 1) + 0.01 * j for j in range(n_layers)] for i in range(len(steps))]
    return {
        "every": 10, "steps": steps,
        "act_var": [[1.0 + i + j for j in range(n_layers + 1)] for i in range(len(steps))],
        "grad_norm": per_block, "weight_norm": per_block,
        "gpas_gate": per_block if gpas else None, "gpas_scale": per_block if gpas else None,
        "ffn_max_abs": [[5.0 * (i + 1) * (j + 1) for j in range(n_layers)] for i in range(len(steps))],
        "ffn_kurtosis": [[3.0 + i + j for j in range(n_layers)] for i in range(len(steps))],
        "loss_spikes": 2, "spike_steps": [12, 27],
        "effective_rank": {f"blocks.{b}.ffn.{m}": 10.0 + b + k for b in range(n_layers)
                           for k, m in enumerate(("up", "gate", "down"))},
        "layer_cosine": [[1.0 if i == j else 0.5 for j in range(n_layers + 1)] for i in range(n_layers + 1)],
        "layer_importance": [0.3, 0.1][:n_layers], "base_loss": 2.9, "overhead_seconds": 0.4,
    }


def write_matrix(root: Path, with_probes: bool, scales=tuple(SCALES), seeds=(0, 1, 2)) -> tuple[Path, int]:
    """Records and curves of a synthetic matrix; returns (folder, number of cells with probes)."""
    folder = root / "synth"
    n_probed = 0
    clock = itertools.count()  # start times in matrix order, as `bench run` trains the cells
    for scale in scales:
        for act in ACTS:
            for norm in NORMS:
                for seed in seeds:
                    cid = f"{scale}-{act}-{norm.replace('+', '_')}-s{seed}-abc123"
                    loss = final_loss(scale, act, norm, seed)
                    rec = {
                        "id": cid, "matrix": "synth", "status": "ok", "config_hash": "abc123def0",
                        "activation": act, "norm": norm, "scale": scale, "seed": seed,
                        "config": {"seed": seed, "scale": scale, "model": {"block_size": 16},
                                   "train": {"batch_size": 4, "grad_accum": 1}, "data": {"tokenizer": "bytes"}},
                        "params": {"total": SCALES[scale] + 4096, "non_embedding": SCALES[scale]},
                        "data": {"unigram_ppl": 60.0, "tokenizer_fingerprint": "677c5dd8aa"},
                        "metrics": {"val_loss": loss, "val_ppl": math.exp(loss), "ood_loss": loss + 0.2,
                                    "ood_ppl": math.exp(loss + 0.2), "train_loss": loss - 0.05,
                                    "tokens_per_sec": (3000.0 if act == "swiglu" else 1800.0)
                                    / (SCALES[scale] / 10_000) + 10 * seed,
                                    "mfu": 0.01, "peak_memory_bytes": 2**28, "train_seconds": 8.0,
                                    "steps": 40, "tokens": 40 * 64, "mfu_basis": "test", "peak_memory_basis": "test"},
                        "wall_seconds": 10.0, "precision": "32-true",
                        "started": f"2026-01-01T00:{next(clock):02d}:00+00:00",
                        "command": ["bench", "run", "synth"],
                        "environment": {"packages": {"torch": "2.13.0", "lightning": "2.6.6"}, "python": "3.11.9",
                                        "device": "test CPU", "platform": "linux",
                                        "git": {"commit": "0123456789abcdef" * 2 + "01234567", "dirty": False}},
                    }
                    if with_probes and scale == "micro" and act == "swiglu" and seed == 0:
                        rec["probes"] = probes(gpas=norm.endswith("gpas"))
                        n_probed += 1
                    else:
                        rec["probes"] = None
                    d = folder / cid
                    d.mkdir(parents=True)
                    (d / "record.json").write_text(json.dumps(rec))
                    rows = ["epoch,ood/loss,ood/ppl,step,train/loss,val/loss,val/ppl"]
                    for s in range(9, 40, 10):
                        v = loss + 1.5 * (39 - s) / 39
                        rows.append(f"0,,,{s},{v + 0.05},,")
                        if s % 20 == 19:
                            rows.append(f"0,{v + 0.2},{math.exp(v + 0.2)},{s},,{v},{math.exp(v)}")
                    (d / "metrics.csv").write_text("\n".join(rows) + "\n")
    return folder, n_probed


# ---- reading LaTeX back ----------------------------------------------------------------------------

def untex(text: str) -> str:
    """The inverse of ``render.tex`` (line breaks aside, which become spaces): longest replacement first,
    anything else is itself; an unescaped special fails."""
    back = sorted(((v, k) for k, v in SPECIAL.items() if k not in "\r\n"), key=lambda kv: -len(kv[0]))
    out, i = [], 0
    while i < len(text):
        for v, k in back:
            if text.startswith(v, i):
                out.append(k)
                i += len(v)
                break
        else:
            assert text[i] not in SPECIAL or text[i] in "\r\n", f"unescaped {text[i]!r} at {i} in {text!r}"
            out.append(text[i])
            i += 1
    return "".join(out)


def latex_cells(text: str) -> list[list[str]]:
    """The body rows of a tabular, cells split on unescaped '&'."""
    body = text.split("\\midrule\n")[1].split("\\bottomrule")[0]
    return [[c.strip() for c in re.split(r"(?<!\\)&", ln.removesuffix(r" \\"))] for ln in body.splitlines()]


def latex_tables(text: str) -> list[dict]:
    """Each table environment: its caption, column spec, rows (header first) and footnote."""
    out = []
    for block in re.findall(r"\\begin\{table\}\[htbp\]\n(.*?)\\end\{table\}", text, re.S):
        spec = re.search(r"\\begin\{tabular\}\{([lr]+)\}", block).group(1)
        assert block.count("\\toprule") == block.count("\\midrule") == block.count("\\bottomrule") == 1
        head = block.split("\\toprule\n")[1].split(" \\\\\n")[0]
        foot = block.split("{\\footnotesize\n")[1].split("\n}")[0] if "\\footnotesize" in block else ""
        out.append({"caption": re.search(r"\\caption\{(.*)\}\n", block).group(1), "spec": spec, "foot": foot,
                    "rows": [[c.strip() for c in re.split(r"(?<!\\)&", head)], *latex_cells(block)],
                    "block": block})
    return out


# ---- cells with known validation curves (the equal steps / compute / time views) --------------------

def record(act, seed=0, loss=3.0, status="ok", steps=200, fpb=1e9, train_seconds=200.0, norm="pre", lr=3e-3,
           scale="nano", vocab=256, accum=1):
    return Record.from_dict({"id": f"{scale}-{act}-{norm}-lr{lr}-s{seed}", "scale": scale, "activation": act,
            "norm": norm, "seed": seed, "status": status,
            "metrics": ({"val_loss": loss, "val_ppl": math.exp(loss), "steps": steps, "tokens": steps * 64,
                         "flops_per_batch": fpb, "train_seconds": train_seconds} if status == "ok" else {"steps": 3}),
            "params": {"total": 1100, "non_embedding": 1000}, "data": {"vocab_size": vocab},
            "config": {"seed": seed, "model": {"block_size": 8}, "train": {"batch_size": 8, "grad_accum": accum,
                                                                            "lr": lr},
                       "data": {"tokenizer": "bytes"}},
            "started": f"2026-01-01T00:00:{seed:02d}"})


def csv_curve(points, seconds_per_step=None) -> dict:
    """points: [(steps done, val loss)] -> a parsed metrics.csv (logged step = steps done - 1)."""
    rows = ["epoch,step,time/train_seconds,train/loss,val/loss"]
    for s, v in points:
        t = "" if seconds_per_step is None else f"{s * seconds_per_step}"
        rows.append(f"0,{s - 1},{t},,{v}")
    return parse_curve("\n".join(rows) + "\n")


STEPS = [40, 80, 120, 160, 200]


def fast(s):  # loss linear in ln(step): log-x interpolation is exact for both cells
    return 5.0 - 0.5 * math.log(s)


def slow(s):  # 0.1 nats better at every step, but twice the FLOPs and seconds per step
    return 4.9 - 0.5 * math.log(s)


def three_cells():
    """a, b and c at 1 s a step; c is best at every step but stopped at 100 steps."""
    recs = [record("a", loss=fast(200)), record("b", loss=fast(200) + 0.2), record("c", loss=fast(100) - 0.5,
                                                                                   steps=100, train_seconds=100.0)]
    curves = {recs[0].id: csv_curve([(s, fast(s)) for s in STEPS], 1.0),
              recs[1].id: csv_curve([(s, fast(s) + 0.2) for s in STEPS], 1.0),
              recs[2].id: csv_curve([(s, fast(s) - 0.5) for s in STEPS if s <= 100], 1.0)}
    return recs, curves


# ---- a ladder of two laws that cross at a known size ----------------------------------------------

RUNGS = np.geomspace(2e4, 1e6, 5)
CROSS = 2e5  # where the two laws below are equal


def two_laws():
    """swiglu: E=1.8, alpha=0.3; polynorm: lower at small N (a lower floor but a smaller exponent), equal to
    swiglu at CROSS and above it beyond (and below it again far out, where its lower floor wins)."""
    a = lambda x: 1.8 + 1.7 * (np.asarray(x) / 2e4) ** -0.3  # noqa: E731
    b_alpha, b_E = 0.15, 1.6
    b_A = (a(CROSS) - b_E) * CROSS ** b_alpha
    return {"swiglu": a, "polynorm": lambda x: b_E + b_A * np.asarray(x, float) ** -b_alpha}


def ladder_record(act, n, s, loss, ladder=True, tokens=None):
    return Record(id=f"micro-{act}-pre-N{n / 1e3:.0f}k-s{s}", status="ok", scale="micro", activation=act, norm="pre",
                  seed=s, axes={"activation": act, "norm": "pre", "seed": s,
                                **({"N": f"{n / 1e3:.0f}k"} if ladder else {})},
                  params=Params(total=int(n) + 16384, non_embedding=int(n)),
                  metrics=Metrics(val_loss=float(loss), tokens=tokens))


def ladder(seeds=3, sd=0.004, ladder=True):
    """Records of the two laws at RUNGS with seed noise (``ladder`` False: the same without the rung axis)."""
    rng = np.random.default_rng(7)
    return [ladder_record(act, n, s, law(n) + rng.normal(0, sd), ladder, int(20 * n))
            for act, law in two_laws().items() for n in RUNGS for s in range(seeds)]


# a metrics.csv as Lightning's CSVLogger writes it: train and validation rows interleaved, blanks between
CURVE = """epoch,ood/loss,ood/ppl,step,train/loss,val/loss,val/ppl
0,,,4,4.0,,
0,3.9,49.4,9,,3.5,33.1
0,,,14,3.0,,
0,2.9,18.2,19,,2.8,16.4
0,,,24,2.6,,
0,2.5,12.2,29,,2.4,11.0
"""
