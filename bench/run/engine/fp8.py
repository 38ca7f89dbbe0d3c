"""fp8 training through torchao: eligible Linear layers become torchao Float8Linear (see precision.py)."""

from __future__ import annotations

import dataclasses

import lightning as L
import torch

from ...errors import ConfigError
from ..config.precision import fp8_device_problem, fp8_recipe


def fp8_filter(module: torch.nn.Module, fqn: str) -> bool:
    """Convert only the Linear layers of the blocks whose dims the fp8 GEMM accepts."""
    if not fqn.startswith("blocks."):
        return False
    if isinstance(module, torch.nn.Linear):
        return module.in_features % 16 == 0 and module.out_features % 16 == 0
    return True


def convert_fp8(model: torch.nn.Module, recipe: str, emulate: bool = False) -> int:
    """Swap the eligible Linear layers of ``model`` for torchao Float8Linear in place; returns how
    many were swapped. ``emulate`` runs the float8 casts without fp8 GEMMs (CPU tests)."""
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    config = Float8LinearConfig.from_recipe_name(recipe)
    if emulate:
        config = dataclasses.replace(config, emulate=True)
    convert_to_float8_training(model, module_filter_fn=fp8_filter, config=config)
    return sum(type(m).__name__ == "Float8Linear" for m in model.modules())


class Float8Training(L.Callback):
    """Converts the module's Transformer to float8 training before the optimizer is built (Lightning
    calls ``setup`` before ``configure_optimizers``; Float8Linear keeps the same weight Parameters)."""

    def __init__(self, recipe: str, emulate: bool = False):
        self.recipe, self.emulate, self.converted = recipe, emulate, 0

    def setup(self, trainer, pl_module, stage):
        if stage != "fit" or self.converted:
            return
        if not self.emulate and (problem := fp8_device_problem(trainer.strategy.root_device.type)):
            raise ConfigError(problem)
        model = getattr(pl_module.model, "_orig_mod", pl_module.model)
        self.converted = convert_fp8(model, self.recipe, self.emulate)
        if self.converted == 0:
            raise ConfigError(f"fp8-{self.recipe}: no Linear layer has dims divisible by 16 (d_model and the "
                              "FFN width must be multiples of 16)")


def precision_callbacks(cfg) -> list[L.Callback]:
    """The callbacks a cell's precision needs (none unless fp8)."""
    recipe = fp8_recipe(cfg.train.precision)
    return [Float8Training(recipe)] if recipe else []
