"""The LightningModule: loss, optimizer groups, LR schedule, gradient clipping, validation metrics."""

from __future__ import annotations

import math
import time

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from models import Transformer
from models.moe import moe_layers, weighted_router_loss
from models.kernels import linear_cross_entropy

from .builders import build_optimizer, build_schedule, cosine_with_warmup, param_groups  # noqa: F401 - re-exported
from ..config.device import flag
from ..config.schema import RunConfig

VAL_SPLITS = ("val", "ood")  # default names: loader 0 is in-domain validation, 1 the out-of-domain text


def split_batch(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets): a (B, T+1) token tensor is shifted by one; a pair is taken as is."""
    if isinstance(batch, (tuple, list)):
        return batch[0], batch[1]
    return batch[:, :-1], batch[:, 1:]


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy in fp32; target -100 (padding) is ignored."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten().long(), ignore_index=-100,
                           reduction=reduction)


class LMModule(L.LightningModule):
    def __init__(self, cfg: RunConfig, val_names=None):
        super().__init__()
        self.cfg = cfg
        self.model = Transformer(cfg.model)
        self.moe = moe_layers(self.model)  # empty for a dense model: training_step adds nothing
        self.val_names = tuple(val_names or VAL_SPLITS)  # the datamodule's: val, ood, then data.eval domains
        self.val_loss = nn.ModuleList(MeanMetric() for _ in self.val_names)  # token-weighted means
        self.flops_per_batch: int | None = None  # set by the metrics callback (Lightning's name)
        # Our own fp32 copies: under bf16-true, Lightning's logged values are accumulated in bf16.
        self.last_train_loss: torch.Tensor | None = None
        self.val_results: dict[str, float] = {}
        self.validated_at: int | None = None  # global step of the last validation
        # The in-domain validation loss before any optimizer step (Lightning's sanity pass run over the
        # whole split, train.init_val): the loss at init that the LR sensitivity and "not learned" use.
        self.init_val_loss: float | None = None
        self.val_seconds = 0.0  # time spent validating over the cell, the init pass included
        self._val_t0: float | None = None

    def forward(self, idx):
        return self.model(idx)

    @property
    def fused_loss(self) -> bool:
        """train.fused_loss; 'auto' stays off under FSDP, whose sharded LM head only its forward gathers."""
        t = self.cfg.train
        return t.fused_loss == "true" or (flag(t.fused_loss, self.cfg) and "fsdp" not in str(t.strategy))

    def loss(self, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Forward and loss: the reference (full logits, fp32 cross-entropy) or, with train.fused_loss,
        the chunked LM head + cross-entropy (same value and exact gradients, no full logits tensor)."""
        if self.fused_loss:
            h = self.model.features(x)
            return linear_cross_entropy(h, self.model.lm_head.weight, y, reduction=reduction)
        return lm_loss(self.model(x), y, reduction=reduction)

    def training_step(self, batch, batch_idx):
        x, y = split_batch(batch)
        loss = self.loss(x, y)
        self._log_train(loss.detach())
        if self.moe:  # router losses (models/moe.py), logged apart from the LM loss
            router, aux = weighted_router_loss(self.moe, self.cfg.model)
            self._log_router({f"train/moe_{k}_loss": v.detach() for k, v in aux.items()})
            loss = loss + router
        return loss

    @torch.compiler.disable
    def _log_train(self, loss: torch.Tensor) -> None:
        """Outside the compiled step (dynamo cannot trace Lightning's self.log): the model's forward
        and loss stay one graph, and this runs eagerly after it."""
        self.last_train_loss = loss
        self.log("train/loss", loss, prog_bar=True)

    @torch.compiler.disable
    def _log_router(self, losses: dict) -> None:
        self.log_dict(losses)

    def on_validation_epoch_start(self):
        for metric in self.val_loss:  # bf16-true casts the module, metric states included: undo that
            metric.set_dtype(torch.float64)

    def on_validation_start(self):
        self._val_t0 = time.perf_counter()  # the train clock's hold (CellMetrics) synchronized the device

    def _stop_val_clock(self) -> None:
        """At the end of on_validation_epoch_end, after the loss read-back synchronized the device, and
        before the callbacks' on_validation_end (a checkpoint saved there carries this validation)."""
        if self._val_t0 is not None:
            self.val_seconds += time.perf_counter() - self._val_t0
            self._val_t0 = None

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        if dataloader_idx > 0 and self.trainer.sanity_checking:
            return  # the init pass measures the in-domain split only: half a validation's cost
        x, y = split_batch(batch)
        n_tokens = (y != -100).sum()
        loss = self.loss(x, y, reduction="sum") / n_tokens.clamp(min=1)
        self._update_val(dataloader_idx, loss, n_tokens)

    @torch.compiler.disable
    def _update_val(self, dataloader_idx: int, loss: torch.Tensor, n_tokens: torch.Tensor) -> None:
        self.val_loss[dataloader_idx].update(loss, weight=n_tokens)  # torchmetrics: eager

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:  # the init pass: no curve row, no final result
            metric = self.val_loss[0]
            if metric.update_called:
                self.init_val_loss = metric.compute().float().item()
            for metric in self.val_loss:
                metric.reset()
            self._stop_val_clock()
            return
        for split, metric in zip(self.val_names, self.val_loss):
            if metric.update_called:
                loss = metric.compute().float()  # synced over processes by torchmetrics
                self.val_results[f"{split}_loss"] = loss.item()
                self.val_results[f"{split}_ppl"] = math.exp(loss.item())
                self.log(f"{split}/loss", loss)
                self.log(f"{split}/ppl", torch.exp(loss))
                metric.reset()
        self.validated_at = self.global_step
        self._stop_val_clock()

    def on_save_checkpoint(self, checkpoint):
        """A resume at the last step still knows its final train loss, and its final validation when
        the save came after it: the validation is not redone (it would log a second curve row)."""
        loss = self.last_train_loss
        checkpoint["last_train_loss"] = float(loss) if loss is not None else None
        checkpoint["validated_at"], checkpoint["val_results"] = self.validated_at, dict(self.val_results)
        checkpoint["init_val_loss"], checkpoint["val_seconds"] = self.init_val_loss, self.val_seconds

    def on_load_checkpoint(self, checkpoint):
        if checkpoint.get("last_train_loss") is not None:
            self.last_train_loss = torch.tensor(checkpoint["last_train_loss"])
        if checkpoint.get("validated_at") is not None:
            self.validated_at = checkpoint["validated_at"]
            self.val_results.update(checkpoint.get("val_results") or {})
        self.init_val_loss = checkpoint.get("init_val_loss", self.init_val_loss)  # a resume never measures it again
        self.val_seconds = float(checkpoint.get("val_seconds") or 0.0)

    def eval_metrics(self, train_seconds: float | None) -> dict:
        """The loss at init and the validation's cost: seconds, and their share of train + validation
        seconds (probes, checkpoints and start-up excluded from both)."""
        out = {"init_val_loss": self.init_val_loss, "val_seconds": self.val_seconds or None}
        if train_seconds is not None and self.val_seconds > 0:
            out["eval_share"] = self.val_seconds / (train_seconds + self.val_seconds)
        return out

    def configure_optimizers(self):
        opt = build_optimizer(self.model, self.cfg.train, self.device)
        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": build_schedule(opt, self.cfg.train), "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        t = self.cfg.train
        if t.grad_clip > 0:
            self.clip_gradients(optimizer, gradient_clip_val=t.grad_clip, gradient_clip_algorithm="norm")
        if t.gpas_grad_clip > 0:  # one joint clip over every GPAS gate, after the global clip
            gates = [p for n, p in self.model.named_parameters() if "gpas" in n and p.grad is not None]
            if gates:
                torch.nn.utils.clip_grad_norm_(gates, t.gpas_grad_clip)
