"""Training precision as a matrix axis: Lightning's precisions plus fp8 through torchao.

``train.precision`` takes Lightning's names (32-true, bf16-mixed, bf16-true, ...) and
``fp8-<recipe>`` (``fp8`` alone = ``fp8-tensorwise``): torchao float8 training, i.e. every
eligible ``nn.Linear`` swapped for torchao's ``Float8Linear`` (``convert_to_float8_training`` with
``Float8LinearConfig.from_recipe_name(recipe)``), on top of Lightning's bf16-mixed (autocast to bf16,
fp32 master weights): the matmuls of those layers run in float8 e4m3 (forward) / e5m2 (gradients)
with dynamic scales; everything else (embedding, norms, attention softmax, LM head) in bf16/fp32.
Eligible: the Linear layers inside the blocks whose in and out features are multiples of 16 (the
fp8 GEMM needs that); the LM head stays in high precision, as in torchtitan.

fp8 needs CUDA with compute capability >= 8.9 (Ada, Hopper, Blackwell) and torchao (the ``gpu``
extra); anywhere else a run fails before training with one line.
torchao is imported only when an fp8 cell trains (bench/run/engine/fp8.py).
"""

from __future__ import annotations

import torch

from ...errors import ConfigError, install_hint
from .device import cuda_accelerator

FP8_RECIPES = ("tensorwise", "rowwise", "rowwise_with_gw_hp")  # torchao's Float8LinearRecipeName values
FP8 = ("fp8",) + tuple(f"fp8-{r}" for r in FP8_RECIPES)
FP8_BASE = "bf16-mixed"  # what Lightning runs under the fp8 layers
FP8_MIN_CAPABILITY = (8, 9)


def fp8_recipe(precision: str) -> str | None:
    """'fp8' / 'fp8-rowwise' -> 'tensorwise' / 'rowwise'; None for a non-fp8 precision."""
    if not str(precision).startswith("fp8"):
        return None
    return str(precision).partition("-")[2] or "tensorwise"


def lightning_precision(precision: str) -> str:
    """The precision handed to ``L.Trainer``: fp8 cells run bf16-mixed under the float8 layers."""
    return FP8_BASE if fp8_recipe(precision) else precision


def describe(precision: str, as_run: str | None = None) -> dict:
    """What the record stores about a cell's precision besides ``precision`` (Lightning's, as run):
    ``lightning_precision``, and for fp8 the configured name as ``precision`` and its recipe."""
    recipe = fp8_recipe(precision)
    out = {"lightning_precision": as_run or lightning_precision(precision)}
    if recipe:
        out.update(precision=precision, fp8_recipe=recipe, fp8_library="torchao.float8",
                   fp8_layers="block Linear layers (dims % 16 == 0)")
    return out


def fp8_device_problem(accelerator: str = "auto") -> str | None:
    """Why fp8 cannot train here (one line), or None when it can."""
    if not cuda_accelerator(accelerator) or not torch.cuda.is_available():
        return ("fp8 training needs a CUDA GPU with compute capability >= 8.9 (Ada/Hopper or newer); "
                "this machine has no CUDA device")
    cap = torch.cuda.get_device_capability()
    if cap < FP8_MIN_CAPABILITY:
        return (f"fp8 training needs compute capability >= 8.9 (Ada/Hopper or newer); "
                f"{torch.cuda.get_device_name()} has {cap[0]}.{cap[1]}")
    try:
        import torchao.float8  # noqa: F401
    except ImportError:
        return install_hint("torchao", "fp8 training")
    return None


def check_device(cfgs) -> None:
    """Fail before anything trains when a cell's precision cannot run on this machine."""
    for cfg in cfgs:
        if fp8_recipe(cfg.train.precision) and (problem := fp8_device_problem(cfg.train.accelerator)):
            raise ConfigError(f"{cfg.train.precision}: {problem}")
