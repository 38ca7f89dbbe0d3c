"""The cells `bench check` trains and what their numbers depend on besides the code."""

from __future__ import annotations

from models import ACTIVATIONS, SCHEMES

from ....resources import configs_dir
from ...config.presets import norm_names, resolve

BASELINE = configs_dir() / "baselines" / "check-nano.json"
FORMAT = 1

# What every cell trains on (stored in the baseline; a different value needs --update).
SCALE = "nano"
RECIPE = "cpu"
SEED = 0
DEFAULT_STEPS = 24
LOGGED_STEPS = (1, 2, 4, 8, 16)  # steps (before the last) whose train loss and gradient norm are recorded
VAL_ROWS = 64  # held-out rows of block_size + 1 tokens: one fixed validation batch
PROBE_SEED, PROBE_STD = 1, 0.5  # the perturbed-init probe (see train.perturbed())

# The numbers recorded per cell besides parameter counts: the loss and the global gradient norm (before
# clipping) at init ('init'), at the perturbed init ('perturbed'), at LOGGED_STEPS ('stepN') and at the
# last step ('final'), and the loss on the held-out batch after training ('val').
MEASURED = ("loss", "grad_norm")
UNTRAINED = ("init", "perturbed")  # one forward and backward, no update: pure math, no chaotic growth

# MoE cells (models/moe.py) at MOE_SCALE: nano's shape and data, 4 experts, top-2; the key activations
MOE_SCALE = "nano-moe"
MOE_ACTIVATIONS = ("swiglu", "polynorm", "powlu")
MOE_NORMS = ("pre", "pre+gpas")
PER_CELL_FIELDS = ("model.activation", "model.scheme", "model.gpas")


def cell_name(activation: str, norm: str, ffn: str = "dense") -> str:
    """The baseline key of a cell: 'swiglu/pre+gpas', 'swiglu/pre+gpas@moe' for an MoE cell (no config
    hash: a new default must show up as a regression of the cell, not as a new cell)."""
    return f"{activation}/{norm}" + ("" if ffn == "dense" else f"@{ffn}")


def parse_name(name: str) -> tuple[str, str, str]:
    """(activation, norm, ffn) of a baseline key."""
    base, _, ffn = name.partition("@")
    a, _, n = base.partition("/")
    return a, n, ffn or "dense"


def all_cells() -> list[tuple[str, str]]:
    """Every (activation, norm) from the registries, in registry order: post+gpas included."""
    return [(a, n) for a in ACTIVATIONS for n in norm_names()]


def moe_cells() -> list[tuple[str, str, str]]:
    return [(a, n, "moe") for a in MOE_ACTIVATIONS if a in ACTIVATIONS for n in MOE_NORMS]


def uses_plugin(activation: str, norm: str) -> bool:
    """The cell uses a part registered by a plugin (checked against the user's own --baseline file)."""
    return not (ACTIVATIONS.part(activation).builtin and SCHEMES.part(norm.split("+")[0]).builtin)


def select_cells(activations, norms, baseline: dict | None, own_baseline: bool,
                 ffns=None) -> list[tuple[str, ...]]:
    """The cells a check runs. Named ones when --activation/--norm are given; otherwise against the
    committed baseline every built-in cell, against a user's --baseline FILE the cells it holds plus
    every cell that uses a plugin part (every cell when no plugin is loaded)."""
    cells = all_cells() + moe_cells()
    if activations or norms or ffns:
        return [c for c in cells if (not activations or c[0] in activations) and (not norms or c[1] in norms)
                and (not ffns or (c[2:] or ("dense",))[0] in ffns)]
    if not own_baseline:
        return [c for c in cells if not uses_plugin(*c[:2])]
    if not any(uses_plugin(*c[:2]) for c in cells):
        return cells
    held = set((baseline or {}).get("cells", {}))
    return [c for c in cells if uses_plugin(*c[:2]) or cell_name(*c) in held]


def warmup_for(steps: int) -> int:
    return max(1, steps // 4)


def cell_config(activation: str, norm: str, steps: int, ffn: str = "dense"):
    """The resolved RunConfig of one check cell (nano or nano-moe scale, cpu recipe, fixed seed)."""
    return resolve({"scale": SCALE if ffn == "dense" else MOE_SCALE, "recipe": RECIPE, "seed": SEED,
                    "activation": activation, "norm": norm,
                    "data.corpus": "bundled", "data.tokenizer": "bytes",
                    "train.max_steps": steps, "train.warmup_steps": warmup_for(steps)})


def logged_steps(steps: int) -> list[int]:
    return [s for s in LOGGED_STEPS if s < steps - 1]


def settings(steps: int) -> dict:
    """What the numbers depend on besides the code: a baseline made with other settings is not comparable."""
    cfg = cell_config("swiglu", "pre", steps)
    return {"scale": SCALE, "recipe": RECIPE, "seed": SEED, "steps": steps, "warmup_steps": warmup_for(steps),
            "batch_size": cfg.train.batch_size, "block_size": cfg.model.block_size, "val_rows": VAL_ROWS,
            "logged_steps": logged_steps(steps), "probe_seed": PROBE_SEED, "probe_std": PROBE_STD,
            "threads_per_cell": 1}


def reference_config(steps: int) -> dict:
    """The resolved config every cell shares (dotted paths), to name what changed when a baseline differs."""
    flat = {}
    for key, value in cell_config("swiglu", "pre", steps).to_dict().items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in flat.items() if k not in PER_CELL_FIELDS}
