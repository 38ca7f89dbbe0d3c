"""The LightningModule: loss, optimizer groups, LR schedule, gradient clipping, validation metrics."""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from models import Transformer
from models.moe import moe_layers, weighted_router_loss

from .config import RunConfig

VAL_SPLITS = ("val", "ood")  # dataloader 0 is in-domain validation, 1 the out-of-domain text


def split_batch(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets): a (B, T+1) token tensor is shifted by one; a pair is taken as is."""
    if isinstance(batch, (tuple, list)):
        return batch[0], batch[1]
    return batch[:, :-1], batch[:, 1:]


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy in fp32; target -100 (padding) is ignored."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten().long(), ignore_index=-100,
                           reduction=reduction)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: norm gains, biases, polynomial coefficients and GPAS gates are vectors
    or scalars, and the references exclude them all from weight decay."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cosine_with_warmup(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear warmup to 1, then cosine down to min_ratio at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class LMModule(L.LightningModule):
    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.cfg = cfg
        self.model = Transformer(cfg.model)
        self.moe = moe_layers(self.model)  # empty for a dense model: training_step adds nothing
        self.val_loss = nn.ModuleList(MeanMetric() for _ in VAL_SPLITS)  # token-weighted means
        self.flops_per_batch: int | None = None  # set by the metrics callback (Lightning's name)
        # Our own fp32 copies: under bf16-true, Lightning's logged values are accumulated in bf16.
        self.last_train_loss: torch.Tensor | None = None
        self.val_results: dict[str, float] = {}
        self.validated_at: int | None = None  # global step of the last validation

    def forward(self, idx):
        return self.model(idx)

    def training_step(self, batch, batch_idx):
        x, y = split_batch(batch)
        loss = lm_loss(self.model(x), y)
        self.last_train_loss = loss.detach()
        self.log("train/loss", self.last_train_loss, prog_bar=True)
        if self.moe:  # router losses (models/moe.py), logged apart from the LM loss
            router, aux = weighted_router_loss(self.moe, self.cfg.model)
            self.log_dict({f"train/moe_{k}_loss": v.detach() for k, v in aux.items()})
            loss = loss + router
        return loss

    def on_validation_epoch_start(self):
        for metric in self.val_loss:  # bf16-true casts the module, metric states included: undo that
            metric.set_dtype(torch.float64)

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        x, y = split_batch(batch)
        n_tokens = (y != -100).sum()
        loss = lm_loss(self.model(x), y, reduction="sum") / n_tokens.clamp(min=1)
        self.val_loss[dataloader_idx].update(loss, weight=n_tokens)

    def on_validation_epoch_end(self):
        for split, metric in zip(VAL_SPLITS, self.val_loss):
            if metric.update_called:
                loss = metric.compute().float()  # synced over processes by torchmetrics
                self.val_results[f"{split}_loss"] = loss.item()
                self.val_results[f"{split}_ppl"] = math.exp(loss.item())
                self.log(f"{split}/loss", loss)
                self.log(f"{split}/ppl", torch.exp(loss))
                metric.reset()
        self.validated_at = self.global_step

    def on_save_checkpoint(self, checkpoint):  # a resume at the last step still knows its final train loss
        loss = self.last_train_loss
        checkpoint["last_train_loss"] = float(loss) if loss is not None else None

    def on_load_checkpoint(self, checkpoint):
        if checkpoint.get("last_train_loss") is not None:
            self.last_train_loss = torch.tensor(checkpoint["last_train_loss"])

    def configure_optimizers(self):
        t = self.cfg.train
        groups = param_groups(self.model, t.weight_decay)
        cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[t.optimizer]
        opt = cls(groups, lr=t.lr, betas=tuple(t.betas), eps=t.eps)  # adam: weight decay is L2
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: cosine_with_warmup(s, t.warmup_steps, t.max_steps, t.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        t = self.cfg.train
        if t.grad_clip > 0:
            self.clip_gradients(optimizer, gradient_clip_val=t.grad_clip, gradient_clip_algorithm="norm")
        if t.gpas_grad_clip > 0:  # one joint clip over every GPAS gate, after the global clip
            gates = [p for n, p in self.model.named_parameters() if "gpas" in n and p.grad is not None]
            if gates:
                torch.nn.utils.clip_grad_norm_(gates, t.gpas_grad_clip)
