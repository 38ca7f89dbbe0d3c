"""The papers' training-dynamics analyses as one Lightning callback, ``Probes``.

Sampled during training, every ``every`` optimizer steps (train.probe_every), at the first step
and at the last one; a sample labelled step s sees the weights after s updates:
- per-layer residual-stream activation variance (embedding output = layer 0, then after each block);
- per-layer gradient norm, taken in on_before_optimizer_step, i.e. BEFORE gradient clipping
  (Lightning calls that hook before it clips), and per-layer weight norm (whole block, and its
  attention and FFN parts, as GPAS Figure 6);
- GPAS gate a_l and its forward multiplier 1 - act(a_l), when the model has GPAS;
- FFN outliers: max |a| and kurtosis of each FFN's hidden activation (the input of ``down``; an
  MoE's experts pooled per layer, forward.py).
Activation statistics come from one extra no-grad, eval-mode forward of a small fixed probe batch
(the first validation rows), not from hooks on the training step: the same inputs at every sample
make the curves comparable, the compiled training graph is never touched (the probe forward calls
``model.forward`` directly, bypassing ``Module.compile``), and the cost is already far below 5%
(measured below), so hooks on the training step would buy nothing worth their complication.

Every optimizer step: the train loss (``outputs`` of on_train_batch_end) is kept as a device
tensor and read back only at the next sample, so there is no per-step host sync on GPU. Loss
spikes: steps whose loss exceeds the mean of the previous ``spike_window`` steps by
max(``spike_std`` x their std, ``spike_min`` nats).

At the end of training (analyses.py): effective rank of every FFN matrix (PolyCom C.2), the layer x layer cosine
similarity of hidden states (PolyCom Figure 7), and layer importance (GPAS Figure 7): the
token-weighted loss with one block skipped, minus the loss with none skipped.

``overhead_seconds`` is the time spent inside this callback (perf_counter, CUDA-synchronized
around each sample); ``overhead_train_seconds`` is the part inside the training loop.

Measured overhead (default CPU run: micro scale, swiglu, 4 layers, d=128, batch 16 x 128, 150
steps, probe_every=50, so 4 samples at steps 0, 50, 100, 149), with the command

    LITDATA_DISABLE_VERSION_CHECK=1 python -m bench.run.tools.overhead --steps 150 --every 50

on the 2-core CPU box while other jobs kept its load at ~7 (so absolute times are ~3x slow):
- OMP_NUM_THREADS=1: 0.38 s/step; probes inside training 0.64 s = 1.1% of the train time (0.16 s
  per sample, i.e. about 0.4 of a training step: one forward plus statistics, every 50 steps);
  end-of-training analyses 1.1 s once (about 3 training steps; mostly layer importance:
  (L+1) forwards x 2 validation batches). A run without probes (--every 0) took 0.37 s/step (within noise).
- default 2 threads (OpenMP threads starved by the other jobs): 2.4 s/step; probes 2.3% of train.
The per-step loss bookkeeping is a list append (no sync); its time is included above.

Distributed note: every rank runs the probes on its own copy. Under DDP every rank holds the whole
model. Under FSDP each rank holds a shard, so the gradient and weight norms are combined over ranks
(``whole_norms``: the square root of the summed squared shard norms), never one rank's shard.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable

import lightning as L
import torch

from ..module import split_batch
from .analyses import final_analyses
from ...config.probes import register_probe
from .forward import PROBE_ROWS, base_model, evaluating, first_loader, probe_batch, probe_forward
from .measures import find_spikes, is_sharded, l2, whole_norms


# ---------------------------------------------------------------- the callback


@register_probe("training", field="probes", doc="per-layer activation variance, gradient and weight norms, GPAS "
                "gates, FFN max |a| and kurtosis, loss spikes; effective rank, layer cosine and importance at the end")
class Probes(L.Callback):
    """Per-layer training probes every ``every`` optimizer steps and end-of-training analyses.

    probe_batch: a (B, T+1) token tensor or an (inputs, targets) pair (a validation batch); its
    first ``probe_rows`` rows are kept. val_batches: optional factory of an iterable of validation
    batches for layer importance (its first ``importance_batches``); without it the probe batch is
    used. every=0 turns everything off: no hook does any work and result() holds empty lists."""

    def __init__(self, every: int, probe_batch, val_batches: Callable[[], Iterable] | None = None,
                 importance_batches: int = 2, probe_rows: int = PROBE_ROWS, spike_window: int = 20,
                 spike_std: float = 3.0, spike_min: float = 0.1):
        x, y = split_batch(probe_batch)
        self.every = every
        self.x, self.y = x[:probe_rows].clone(), y[:probe_rows].clone()
        self.val_batches, self.importance_batches = val_batches, importance_batches
        self.spike = {"window": spike_window, "n_std": spike_std, "min_jump": spike_min}
        self.samples: dict[str, list] = {k: [] for k in (
            "steps", "act_var", "grad_norm", "weight_norm", "attn_weight_norm", "ffn_weight_norm",
            "gpas_gate", "gpas_scale", "ffn_max_abs", "ffn_kurtosis")}
        self.losses: dict[int, float] = {}  # optimizer step -> train loss (mean over micro-batches)
        self._pending: list[tuple[int, torch.Tensor]] = []  # (step, device loss) not yet read back
        self._last_step: int | None = None
        self.final: dict = {}
        self.overhead = {"train": 0.0, "end": 0.0}

    @classmethod
    def from_config(cls, cfg, dm) -> Probes | None:
        """Probes for a run (None when train.probe_every is 0): the probe batch is the first
        in-domain validation batch, layer importance uses the first validation batches."""
        if cfg.train.probe_every <= 0:
            return None
        return cls(cfg.train.probe_every, probe_batch(dm), val_batches=lambda: first_loader(dm.val_dataloader()))

    # -- timing

    @contextlib.contextmanager
    def _timed(self, key: str, device: torch.device):
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()  # wait for queued training work, so that only the probes' own work is timed
        t0 = time.perf_counter()
        try:
            yield
        finally:
            sync()
            self.overhead[key] += time.perf_counter() - t0

    # -- every step: the train loss, kept on device

    def on_train_start(self, trainer, pl_module):
        self._last_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every <= 0:
            return
        t0 = time.perf_counter()  # no device work here (a list append), so no sync is needed
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        step = trainer.global_step
        stepped = step != self._last_step  # this micro-batch ended with an optimizer step
        self._last_step = step
        if loss is not None:  # Lightning divides it by accumulate_grad_batches: the sum is the step mean
            self._pending.append((step - 1 if stepped else step, loss.detach()))
        self.overhead["train"] += time.perf_counter() - t0

    def _read_losses(self):
        """One host read for every loss since the last sample."""
        if self._pending:
            values = torch.stack([v.float() for _, v in self._pending]).tolist()
            for (step, _), v in zip(self._pending, values):
                self.losses[step] = self.losses.get(step, 0.0) + v
            self._pending.clear()

    # -- every ``every`` optimizer steps: the per-layer probes

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        step = trainer.global_step  # updates done so far; this hook runs before clipping and the update
        if self.every <= 0 or not (step % self.every == 0 or step == trainer.max_steps - 1):
            return
        with self._timed("train", pl_module.device):
            self._read_losses()
            self._sample(trainer, pl_module, step)

    def _sample(self, trainer, pl_module, step: int):
        model = base_model(pl_module)
        with evaluating(model):
            out = probe_forward(model, self.x.to(pl_module.device), trainer.precision_plugin.forward_context)
        blocks = model.blocks
        rows = {  # every value stays on device until the single .tolist() below
            "act_var": torch.stack([h.float().var(correction=0) for h in out["hidden"]]),
            "grad_norm": torch.stack([l2(p.grad for p in b.parameters() if p.grad is not None) for b in blocks]),
            "weight_norm": torch.stack([l2(b.parameters()) for b in blocks]),
            "attn_weight_norm": torch.stack([l2(b.attn.parameters()) for b in blocks]),
            "ffn_weight_norm": torch.stack([l2(b.ffn.parameters()) for b in blocks]),
            "ffn_max_abs": out["ffn"][:, 0],
            "ffn_kurtosis": out["ffn"][:, 1],
        }
        if is_sharded(trainer.strategy):  # shard norms -> whole-model norms, as DDP/one device report
            for k in ("grad_norm", "weight_norm", "attn_weight_norm", "ffn_weight_norm"):
                rows[k] = whole_norms(rows[k], lambda t: trainer.strategy.reduce(t, reduce_op="sum"))
        if blocks[0].gpas is not None:
            rows["gpas_gate"] = torch.stack([b.gpas.gate.detach().float() for b in blocks])
            rows["gpas_scale"] = torch.stack([b.gpas.scale().float() for b in blocks])
        flat = torch.cat([v.float().flatten() for v in rows.values()]).tolist()  # one host sync
        self.samples["steps"].append(step)
        for name, v in rows.items():
            self.samples[name].append(flat[:v.numel()])
            flat = flat[v.numel():]

    # -- end of training: the analyses on the final weights

    def on_train_end(self, trainer, pl_module):
        if self.every <= 0:
            return
        with self._timed("end", pl_module.device):
            self._read_losses()
            self.final = self.analyse(base_model(pl_module), pl_module.device,
                                      trainer.precision_plugin.forward_context)

    def analyse(self, model, device, context=contextlib.nullcontext) -> dict:
        """The end-of-training analyses (analyses.py) of ``model`` as it is now."""
        return final_analyses(model, self.x.to(device), self._importance_batches(device), context)

    def _importance_batches(self, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self.val_batches is None:
            return [(self.x.to(device), self.y.to(device))]
        out = []
        for batch in self.val_batches():
            if len(out) == self.importance_batches:
                break
            x, y = split_batch(batch)
            out.append((x.to(device), y.to(device)))
        return out

    # -- checkpoints: a resumed run keeps the history sampled before the interruption

    def state_dict(self) -> dict:
        self._read_losses()
        return {"samples": self.samples, "losses": self.losses, "overhead": self.overhead}

    def load_state_dict(self, state: dict) -> None:
        self.samples = state["samples"]
        self.losses = {int(k): v for k, v in state["losses"].items()}
        self.overhead = dict(state["overhead"])

    # -- the record

    def result(self) -> dict:
        """JSON-serializable summary; callable at any time (e.g. after a divergence)."""
        self._read_losses()
        steps = sorted(self.losses)
        spikes = [steps[i] for i in find_spikes([self.losses[s] for s in steps], **self.spike)]
        has_gpas = bool(self.samples["gpas_gate"])
        return {
            "every": self.every,
            **{k: v for k, v in self.samples.items() if k not in ("gpas_gate", "gpas_scale")},
            "gpas_gate": self.samples["gpas_gate"] if has_gpas else None,
            "gpas_scale": self.samples["gpas_scale"] if has_gpas else None,
            "grad_norm_basis": "before clipping",
            "probe_tokens": int(self.x.numel()) if self.every > 0 else 0,
            "loss_spikes": len(spikes), "spike_steps": spikes, "spike_rule": dict(self.spike),
            "effective_rank": self.final.get("effective_rank", {}),
            "layer_cosine": self.final.get("layer_cosine", []),
            "layer_importance": self.final.get("layer_importance", []),
            "base_loss": self.final.get("base_loss"),
            "importance_tokens": self.final.get("importance_tokens", 0),
            "overhead_seconds": self.overhead["train"] + self.overhead["end"],
            "overhead_train_seconds": self.overhead["train"],
            "overhead_end_seconds": self.overhead["end"],
        }
