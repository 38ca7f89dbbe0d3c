"""What the tests train on, shared by the tests and the benchmarks (not a conftest: the benchmarks folder
has its own conftest module, and the two names would clash on import): an in-memory stand-in for
TextDataModule and a nano cell."""

import lightning as L
import torch
from torch.utils.data import DataLoader

from bench.run.config.matrix import Cell, cell_id
from bench.run.config.presets import resolve

# a nano cell that trains in a few seconds on TinyDataModule and validates twice
NANO = {"scale": "nano", "train.max_steps": 12, "train.val_every": 6, "train.warmup_steps": 2,
        "train.throughput_warmup": 2, "train.log_every": 1, "data.ood_corpus": "kjv"}


def nano_cell(*layers: dict, **settings) -> Cell:
    """The NANO cell with ``layers`` (dicts of dotted settings, a test file's own base first) and then
    ``settings`` laid over it, resolved and given its id."""
    merged = dict(NANO)
    for layer in (*layers, settings):
        merged.update(layer)
    cfg = resolve(merged)
    return Cell(cell_id(cfg, {}), cfg, ())


class TinyDataModule(L.LightningDataModule):
    """In-memory stand-in for TextDataModule: fixed random tokens, same interface the runner uses."""

    vocab_size = 256
    corpus_fingerprint = "tiny-corpus"
    tokenizer_fingerprint = "tiny-bytes"

    def __init__(self, seq_len: int = 64, batch_size: int = 8, n: int = 256, seed: int = 0, pattern: bool = True):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        if pattern:  # learnable: each row counts up from a random start, mod 256
            starts = torch.randint(0, 256, (n, 1), generator=g)
            self.data = (starts + torch.arange(seq_len + 1)) % 256
        else:
            self.data = torch.randint(0, 256, (n, seq_len + 1), generator=g)
        self.batch_size = batch_size

    def unigram_ppl(self) -> float:
        return 256.0

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(0))

    def val_dataloader(self):
        return [DataLoader(self.data[:32], batch_size=self.batch_size),
                DataLoader(self.data[32:64], batch_size=self.batch_size)]
