"""An in-memory stand-in for TextDataModule, shared by the tests (not a conftest: the benchmarks
folder has its own conftest module, and the two names would clash on import)."""

import lightning as L
import torch
from torch.utils.data import DataLoader


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
