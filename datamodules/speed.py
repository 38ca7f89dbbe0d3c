"""Training-loader throughput: tokens/s the data module's train_dataloader delivers, nothing else."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class LoaderSpeed:
    workers: int
    batches: int
    tokens: int
    seconds: float

    @property
    def tokens_per_sec(self) -> float:
        return self.tokens / self.seconds


def loader_speed(dm, workers: int, batches: int, warmup: int = 5) -> LoaderSpeed:
    """Time ``batches`` batches of dm's training loader with ``workers`` worker processes, after
    ``warmup`` untimed ones (worker start-up and the first chunk reads). Tokens = targets that count."""
    dm.cfg.num_workers = workers
    loader = dm.train_dataloader()
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    tokens, t = 0, time.perf_counter()
    for _ in range(batches):
        try:
            _, y = next(it)
        except StopIteration:  # a small dataset: the next epoch (a training run does the same)
            it = iter(loader)
            _, y = next(it)
        tokens += int((y != -100).sum())
    return LoaderSpeed(workers, batches, tokens, time.perf_counter() - t)
