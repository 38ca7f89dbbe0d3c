"""The papers' analyses (REFERENCE.md section 7) as one Lightning callback, ``Probes``.

Sampled during training, every ``every`` optimizer steps (train.probe_every), at the first step
and at the last one; a sample labelled step s sees the weights after s updates:
- per-layer residual-stream activation variance (embedding output = layer 0, then after each block);
- per-layer gradient norm, taken in on_before_optimizer_step, i.e. BEFORE gradient clipping
  (Lightning calls that hook before it clips), and per-layer weight norm (whole block, and its
  attention and FFN parts, as GPAS Figure 6);
- GPAS gate a_l and its forward multiplier 1 - act(a_l), when the model has GPAS;
- FFN outliers: max |a| and kurtosis of each FFN's hidden activation (the input of ``down``).
Activation statistics come from one extra no-grad, eval-mode forward of a small fixed probe batch
(the first validation rows), not from hooks on the training step: the same inputs at every sample
make the curves comparable, the compiled training graph is never touched (the probe forward calls
``model.forward`` directly, bypassing ``Module.compile``), and the cost is already far below 5%
(measured below), so hooks on the training step would buy nothing worth their complication.

Every optimizer step: the train loss (``outputs`` of on_train_batch_end) is kept as a device
tensor and read back only at the next sample, so there is no per-step host sync on GPU. Loss
spikes: steps whose loss exceeds the mean of the previous ``spike_window`` steps by
max(``spike_std`` x their std, ``spike_min`` nats).

At the end of training: effective rank of every FFN matrix (PolyCom C.2), the layer x layer cosine
similarity of hidden states (PolyCom Figure 7), and layer importance (GPAS Figure 7): the
token-weighted loss with one block skipped, minus the loss with none skipped.

``overhead_seconds`` is the time spent inside this callback (perf_counter, CUDA-synchronized
around each sample); ``overhead_train_seconds`` is the part inside the training loop.

Measured overhead (default CPU run: micro scale, swiglu, 4 layers, d=128, batch 16 x 128, 150
steps, probe_every=50, so 4 samples at steps 0, 50, 100, 149), with the command

    LITDATA_DISABLE_VERSION_CHECK=1 python -m bench.run.overhead --steps 150 --every 50

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
import math
import time
from collections.abc import Callable, Iterable

import lightning as L
import torch
import torch.nn.functional as F

from models.registry import Registry
from models.moe import ffn_modules

from .module import lm_loss, split_batch

# ---------------------------------------------------------------- registered probes (plugins)


def _probe_check(name, cls) -> str | None:
    if not (isinstance(cls, type) and issubclass(cls, L.Callback)):
        return "must be a lightning.Callback subclass"
    if not callable(getattr(cls, "from_config", None)) or not callable(getattr(cls, "result", None)):
        return "needs a classmethod from_config(cfg, dm) -> instance or None, and result() -> JSON-able dict"
    return None


PROBES = Registry("probe", _probe_check)


def register_probe(name: str, cls=None, *, doc: str | None = None, override: bool = False):
    """Register a probe: a Lightning Callback class with ``from_config(cfg, dm)`` (an instance, or None
    to skip the cell) and ``result()`` (a JSON-able dict, stored in the record under
    ``extra_probes[name]``). Registered probes run beside ``Probes`` and, like it, not when
    train.probe_every is 0."""
    return PROBES.register(name, cls, doc=doc, override=override)


def registered_probes(cfg, dm) -> dict[str, L.Callback]:
    """name -> callback of every registered probe that takes part in this cell."""
    if cfg.train.probe_every <= 0:
        return {}
    built = {name: cls.from_config(cfg, dm) for name, cls in PROBES.items()}
    return {name: cb for name, cb in built.items() if cb is not None}

# ---------------------------------------------------------------- measurements (pure functions)


def effective_rank(w: torch.Tensor) -> float:
    """exp(entropy of p), p_i = s_i / sum_j s_j over the singular values (Roy & Vetterli 2007)."""
    w = w.detach()
    # float64 on CPU is cheap at these sizes; on GPU float32 SVD (the entropy is then in float64)
    s = torch.linalg.svdvals(w.double() if w.device.type == "cpu" else w.float()).double()
    p = s / s.sum()
    return math.exp(-torch.special.xlogy(p, p).sum().item())  # xlogy: 0 log 0 = 0


def kurtosis(a: torch.Tensor) -> torch.Tensor:
    """E[(a - mu)^4] / var^2 over all elements (3 for a normal, 6 for a Laplace); a 0-dim tensor."""
    d = a.detach().float().flatten()
    d = d - d.mean()
    var = d.square().mean()
    return d.pow(4).mean() / var.square()


def layer_cosine(hidden: list[torch.Tensor]) -> torch.Tensor:
    """(L+1) x (L+1): mean over tokens of the cosine similarity of layer i's and layer j's vectors."""
    h = torch.stack([F.normalize(x.detach().float().flatten(0, -2), dim=-1) for x in hidden])  # (L+1, N, d)
    return (torch.einsum("ind,jnd->ij", h, h) / h.shape[1]).clamp(-1, 1)


def find_spikes(losses: list[float], window: int = 20, n_std: float = 3.0, min_jump: float = 0.1) -> list[int]:
    """Indices i whose loss exceeds the mean of losses[i-window:i] by max(n_std * std, min_jump)."""
    t = torch.tensor(losses, dtype=torch.float64)
    if len(t) <= window:
        return []
    prev = t.unfold(0, window, 1)[:-1]  # row k holds the window before index k + window
    threshold = prev.mean(1) + (n_std * prev.std(1, correction=0)).clamp(min=min_jump)
    return (torch.nonzero(t[window:] > threshold).flatten() + window).tolist()


def l2(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """L2 norm of several tensors taken together (0 if there are none)."""
    norms = [torch.linalg.vector_norm(t.detach().float()) for t in tensors]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def is_sharded(strategy) -> bool:
    """FSDP-like strategies: each rank holds a disjoint shard of the parameters (and their grads)."""
    return any(k in type(strategy).__name__.lower() for k in ("fsdp", "modelparallel", "deepspeed"))


def whole_norms(norms: torch.Tensor, reduce: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Whole-model L2 norms from per-shard ones: ||w|| = sqrt(sum over ranks of ||w_shard||^2), since
    the shards partition w. ``reduce`` sums a tensor over ranks (a collective: every rank calls it)."""
    return reduce(norms.double().square()).sqrt().to(norms.dtype)


@contextlib.contextmanager
def skipped(block: torch.nn.Module):
    """The block returns its input: the layer is removed from the residual stream."""
    block.forward = lambda x, *args, **kwargs: x  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        del block.forward


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """The model in eval mode for a probe's forward, its own mode restored after (even on an error)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def base_model(pl_module) -> torch.nn.Module:
    """The Transformer (LMModule.model), unwrapped from torch.compile's OptimizedModule if any."""
    model = getattr(pl_module, "model", pl_module)
    return getattr(model, "_orig_mod", model)


def probe_forward(model, x: torch.Tensor, context=contextlib.nullcontext) -> dict[str, torch.Tensor]:
    """One no-grad forward of x: hidden states and per-layer FFN hidden-activation statistics.
    Calls ``model.forward`` (not ``model(...)``) so that an in-place compiled model runs eagerly."""
    ffn_stats = []

    def record(module, args):  # forward pre-hook on ffn.down: args[0] is act(up x) or act(gate x, up x)
        a = args[0].detach()
        ffn_stats.append(torch.stack([a.abs().max().float(), kurtosis(a)]))

    from .moe_probes import PooledMoments, expert_hooks  # an MoE's experts are pooled per layer

    pooled = [None if hasattr(block.ffn, "down") else PooledMoments() for block in model.blocks]
    hooks = [block.ffn.down.register_forward_pre_hook(record) for block in model.blocks if hasattr(block.ffn, "down")]
    hooks += [h for block, p in zip(model.blocks, pooled) if p is not None for h in expert_hooks(block.ffn, p)]
    try:
        with torch.no_grad(), context():
            logits, hidden = model.forward(x, return_hidden=True)
    finally:
        for h in hooks:
            h.remove()
    if any(p is not None for p in pooled):
        ffn_stats = [p.result().to(x.device) for p in pooled]
    return {"logits": logits, "hidden": hidden, "ffn": torch.stack(ffn_stats)}  # ffn: (L, 2)


def token_loss(model, batches, context=contextlib.nullcontext) -> float:
    """Token-weighted mean cross-entropy over (x, y) batches (padding -100 excluded)."""
    total, n = 0.0, 0
    with torch.no_grad():
        for x, y in batches:
            with context():
                logits = model.forward(x)
            total = total + lm_loss(logits, y, reduction="sum")
            n = n + (y != -100).sum()
    return (total / n).item()


def first_loader(loaders):
    """The in-domain loader: val_dataloader returns a list (val, ood) or a single loader."""
    return loaders[0] if isinstance(loaders, (list, tuple)) else loaders


# ---------------------------------------------------------------- the callback


class Probes(L.Callback):
    """Per-layer training probes every ``every`` optimizer steps and end-of-training analyses.

    probe_batch: a (B, T+1) token tensor or an (inputs, targets) pair (a validation batch); its
    first ``probe_rows`` rows are kept. val_batches: optional factory of an iterable of validation
    batches for layer importance (its first ``importance_batches``); without it the probe batch is
    used. every=0 turns everything off: no hook does any work and result() holds empty lists."""

    def __init__(self, every: int, probe_batch, val_batches: Callable[[], Iterable] | None = None,
                 importance_batches: int = 2, probe_rows: int = 16, spike_window: int = 20,
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
        batch = next(iter(first_loader(dm.val_dataloader())))
        return cls(cfg.train.probe_every, batch, val_batches=lambda: first_loader(dm.val_dataloader()))

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
        """Effective ranks, layer cosine similarity and layer importance of ``model`` as it is now."""
        with evaluating(model):
            ranks = {f"{i}.{name}": sum(per) / len(per)  # an MoE: the mean over its expert FFNs
                     for i, block in enumerate(model.blocks, start=1) for name in ("gate", "up", "down")
                     if (per := [effective_rank(getattr(f, name).weight) for f in ffn_modules(block.ffn)
                                 if hasattr(f, name)])}
            hidden = probe_forward(model, self.x.to(device), context)["hidden"]
            cosine = layer_cosine(hidden).tolist()
            batches = self._importance_batches(device)
            base = token_loss(model, batches, context)
            importance = []
            for block in model.blocks:
                with skipped(block):
                    importance.append(token_loss(model, batches, context) - base)
        return {"effective_rank": ranks, "layer_cosine": cosine, "layer_importance": importance,
                "base_loss": base, "importance_tokens": int(sum((y != -100).sum() for _, y in batches))}

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
