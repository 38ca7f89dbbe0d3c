"""The probes' measurements as pure functions of tensors (no model, no Lightning)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F


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


class PooledMoments:
    """max |a| and kurtosis of the union of several tensors, from running float64 raw moments."""

    def __init__(self):
        self.n, self.max_abs, self.s = 0, None, None

    def update(self, a: torch.Tensor) -> None:
        if a.numel() == 0:
            return
        a = a.detach().double().flatten()
        s = torch.stack([a.sum(), a.square().sum(), a.pow(3).sum(), a.pow(4).sum()])
        m = a.abs().max()
        self.n += a.numel()
        self.s = s if self.s is None else self.s + s
        self.max_abs = m if self.max_abs is None else torch.maximum(self.max_abs, m)

    def result(self) -> torch.Tensor:
        """[max |a|, E[(a - mu)^4] / var^2] as float32 (NaN when nothing was seen)."""
        if self.s is None:
            return torch.full((2,), float("nan"))
        m1, m2, m3, m4 = self.s / self.n
        var = m2 - m1 * m1
        central4 = m4 - 4 * m1 * m3 + 6 * m1 * m1 * m2 - 3 * m1 ** 4
        return torch.stack([self.max_abs, central4 / var.square()]).float()
