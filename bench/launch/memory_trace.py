"""One cell's training steps under fake tensors, with PyTorch's memory tracker: the peak bytes by kind.

See bench/launch/memory.py for what is modelled. Nothing here allocates real memory for the model:
FakeTensorMode gives every tensor its shape, dtype and device but no storage of data.
"""

from __future__ import annotations

import contextlib

import torch

KINDS = ("weights", "gradients", "optimizer", "activations")
DTYPES = {"bf16-true": torch.bfloat16, "16-true": torch.float16, "64-true": torch.float64}
AUTOCAST = {"16-mixed": torch.float16}  # other *-mixed and fp8*: bf16 (fp8 GEMMs run under bf16-mixed)


def compute_context(precision: str):
    """A factory of the forward's autocast context on the CPU, as Lightning's precision plugin sets it."""
    if precision.endswith("-mixed") or precision.startswith("fp8"):
        return lambda: torch.autocast("cpu", dtype=AUTOCAST.get(precision, torch.bfloat16))
    return contextlib.nullcontext


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    saved = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


def sdpa_context(flash: bool):
    """flash=False: the math attention path, which keeps the b x heads x s x s probabilities."""
    if flash:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def loss_fn(model, cfg, fused: bool):
    """The LMModule's training loss: LM loss (full logits, or the chunked LM head) plus router losses."""
    from bench.run.engine.module import lm_loss
    from models.kernels import linear_cross_entropy
    from models.moe import moe_layers, weighted_router_loss

    layers = moe_layers(model)

    def loss(x, y):
        lm = (linear_cross_entropy(model.features(x), model.lm_head.weight, y) if fused
              else lm_loss(model(x), y))
        return lm + weighted_router_loss(layers, cfg.model)[0] if layers else lm
    return loss


def peak_tracker(per_module: bool = False):
    """PyTorch's MemTracker, by default keeping only the process-wide peak.

    The stock tracker also keeps each module's peak, walking every tracked module at every operation:
    three quarters of a 7B trace's time, for figures nothing here reads. The whole-process peak it
    keeps is the same either way (tests/unit/launch/test_memory_trace.py compares the two).
    """
    from torch.distributed._tools.mem_tracker import MemTracker

    if per_module:
        return MemTracker()

    class PeakTracker(MemTracker):
        def _update_peak_stats(self, peak_state) -> None:
            for dev, snap in self._curr_mem_snap.items():
                if self._peak_mem.get(dev, 0) < snap["Total"]:
                    self._peak_mem[dev] = snap["Total"]
                    self._peak_mem_snap[dev] = dict(snap)

    return PeakTracker()


def traced_peak(cfg, flash: bool = True, fused: bool = False, per_module: bool = False) -> dict[str, int]:
    """Peak bytes by kind (KINDS) over two training steps of ``cfg``'s model (see memory.py);
    per_module=True traces with the stock tracker (see peak_tracker)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from bench.run.engine.builders import build_optimizer
    from models import Transformer
    from models.moe import moe_layers

    m, t = cfg.model, cfg.train
    with FakeTensorMode():
        with default_dtype(DTYPES.get(t.precision, torch.float32)):  # as Lightning's *-true init context
            model = Transformer(m)
        for layer in moe_layers(model):
            layer.balanced = True
        opt = build_optimizer(model, t)
        x = torch.zeros(t.batch_size, m.block_size, dtype=torch.long)
        loss, autocast, tracker = loss_fn(model, cfg, fused), compute_context(t.precision), peak_tracker(per_module)
        tracker.track_external(model, opt)
        with tracker, sdpa_context(flash):
            for micro_batches in (1, min(2, t.grad_accum)):  # the second step: Adam states exist
                for _ in range(micro_batches):
                    with autocast():
                        value = loss(x, x)
                    value.backward()
                    every_grad(model)
                    tracker.reset_mod_stats()  # the tracker refuses a second forward otherwise
                opt.step()
                opt.zero_grad(set_to_none=True)
        peak = tracker.get_tracker_snapshot("peak")
    return split(peak)


def every_grad(model) -> None:
    """A zero gradient for a parameter the balanced MoE dispatch left without one (experts other than
    the first): in training every expert gets a gradient, and Adam a state for it."""
    for p in model.parameters():
        if p.requires_grad and p.grad is None:
            p.grad = torch.zeros_like(p)


def split(peak: dict) -> dict[str, int]:
    """The tracker's per-device snapshot (kinds named by _MemRefType values) as KINDS, summed over devices."""
    out = dict.fromkeys(KINDS, 0)
    names = {"Parameter": "weights", "Buffer": "weights", "Gradient": "gradients", "Optstate": "optimizer"}
    for snap in peak.values():
        for kind, n in snap.items():
            key = getattr(kind, "value", kind)
            if key != "Total":
                out[names.get(key, "activations")] += n
    return out
