"""torch.compile for the harness, in one place: what is compiled (each transformer block, or the
whole module), with which backend, and that every cell and cost row starts from a clean cache.

Why a fresh start: dynamo keeps its compiled graphs per code object (``LMModule.loss``,
``Module._call_impl``, the kernels' reference functions), shared by every module of the process,
and a code object holds at most ``torch._dynamo.config.recompile_limit`` (8) entries. A process
that builds a ninth differently-shaped model (a cost table, a matrix of cells) would otherwise
run it eagerly, silently, while its record says "compile true".

Modes (``train.compile``): 'regional' (and 'true'): torch.compile on each transformer block, as
torchtitan does; identical blocks reuse one graph, so compile time does not grow with depth, and
parameter names stay as they are (checkpoints and weights are unchanged). Only training-mode
forwards are compiled: validation and the probes' hooked forwards run eagerly.
'whole': the whole LightningModule (the runner) or the whole loss function (the bare loop), the
old behaviour. 'auto': regional on CUDA, eager elsewhere. 'false': eager.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

# The backend every compile of the harness uses; tests swap in "eager" (dynamo's tracing and
# caching, no code generation) to count graphs cheaply.
BACKEND = "inductor"


_ONE_CACHE = False  # inside one_cache(): fresh() keeps the cache


def fresh() -> None:
    """Forget every compiled graph (the next call compiles anew) and zero dynamo's counters (reset
    keeps them), so graph_counts() describes this cell or row alone. A no-op inside one_cache()."""
    from torch._dynamo.utils import counters

    if _ONE_CACHE:
        return
    torch._dynamo.reset()
    counters.clear()


@contextlib.contextmanager
def one_cache():
    """Repeated runs of one cell share one compile: a clean start, then fresh() keeps dynamo's cache,
    so every later run reuses the first one's graphs (same shapes, same guards) and compiles nothing.
    For repeated timings of one cell (`bench overhead`): their windows exclude compilation anyway,
    and a recompile per run (seconds on a CPU, tens of seconds at gpas-71m on a GPU) would spend
    the measurement's time and set the loops it compares far apart in time."""
    global _ONE_CACHE
    fresh()
    _ONE_CACHE = True
    try:
        yield
    finally:
        _ONE_CACHE = False


def mode(cfg) -> str | None:
    """'regional', 'whole', or None (eager) for this run's train.compile."""
    from ..config.device import on_cuda

    value = str(cfg.train.compile).lower()
    if value in ("true", "regional") or (value == "auto" and on_cuda(cfg)):
        return "regional"
    return "whole" if value == "whole" else None


class BlockCompiler:
    """block -> torch.compile(block), made on the block's first training call: blocks of one type
    share their code objects, so identical blocks reuse one graph (dynamo lifts their parameters to
    graph inputs). Made lazily, so a block a strategy wrapped after setup is the one compiled."""

    def __init__(self, n_blocks: int):
        self.compiled: dict[int, nn.Module] = {}
        # One cache entry per distinct block (a layer-dependent constant such as LNS's 1/sqrt(l), Mix-LN's
        # post and pre blocks), per grad mode: a deep model needs more than the default 8.
        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, 2 * n_blocks + 8)
        if hasattr(config, "accumulated_recompile_limit"):
            config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 8 * config.recompile_limit)

    def __call__(self, block: nn.Module):
        fn = self.compiled.get(id(block))
        if fn is None:
            fn = self.compiled[id(block)] = torch.compile(block, backend=BACKEND)
        return fn


def compile_blocks(model: nn.Module) -> nn.Module:
    """Regional compilation: each transformer block compiled for training (models/transformer.py's
    ``compiled_block`` hook); the model's parameters, names and eager paths are untouched."""
    model.compiled_block = BlockCompiler(len(model.blocks))
    return model


def for_fit(module, cfg):
    """The module to hand to Lightning's fit: compiled as train.compile says, after a fresh start."""
    fresh()
    how = mode(cfg)
    if how == "regional":
        compile_blocks(module.model)
        return module
    if how == "whole":
        return torch.compile(module, backend=BACKEND)  # Lightning's way: before fit
    return module


def loss_fn(module, cfg):
    """``module.loss`` as the bare loops call it, compiled as train.compile says, after a fresh start."""
    fresh()
    how = mode(cfg)
    if how == "regional":
        compile_blocks(module.model)
    elif how == "whole":
        return torch.compile(module.loss, backend=BACKEND)
    return module.loss


def graph_counts() -> dict:
    """Dynamo's own counters since the last fresh(): graphs compiled, frames compiled, and how often
    a code object hit the recompile limit (and so ran eagerly)."""
    from torch._dynamo.utils import counters

    limit_hits = sum(n for reason, n in counters["unimplemented"].items() if "recompile limit" in reason.lower())
    return {"graphs": counters["stats"]["unique_graphs"], "frames_ok": counters["frames"]["ok"],
            "recompile_limit_hits": limit_hits, "graph_breaks": sum(counters["graph_break"].values())}
