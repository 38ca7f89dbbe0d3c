"""TextDataModule: corpus -> tokenizer -> litdata chunks -> (input_ids, targets) batches.

Every loader yields ``(input_ids, targets)``, both int64 of shape (batch, seq_len); targets are
the inputs shifted by one, -100 where there is nothing to predict (truncation-mode padding).

- train_dataloader: a StreamingDataLoader over the training split, shuffled by litdata from
  ``seed`` (each new iterator is a new epoch with a new order, so it never runs dry under
  ``max_steps``). Every call builds a fresh loader: two fits with one seed see the same batches.
- val_dataloader: one loader per name in ``val_names``: the in-domain validation rows ('val'),
  the out-of-domain text ('ood', when ``ood_corpus`` is set), then every ``data.eval`` domain.
  Each holds val_tokens // seq_len rows (fewer if the split is smaller) spread evenly over its
  split, read once into memory; fixed order.

The training corpus is either documents (tokenized here into cached chunks) or a dataset
prepared by `bench data prepare` (prepared.py), streamed from its folder or object storage; its
validation split is the dataset's own. An eval domain is a corpus spec (every document of it) or a
prepared dataset (its validation split).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from .chunks import build_chunks, pad_id, read_meta, token_dtype
from .checks import check_data, open_prepared
from .corpus import CorpusError, Document, fingerprint, load_corpus, split_documents
from .prepared import is_prepared
from .tokenizers import Tokenizer, build_tokenizer

IGNORE = -100


def split_rows(rows: torch.Tensor, pad: int, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, seq_len + 1) rows -> inputs (pads read as EOS: causal attention never lets them reach a
    real position) and targets (pads -> IGNORE), both int64."""
    rows = rows.long()
    is_pad = rows == pad
    return rows[:, :-1].masked_fill(is_pad[:, :-1], eos_id), rows[:, 1:].masked_fill(is_pad[:, 1:], IGNORE)


class Collate:
    """Batch of litdata rows (numpy, seq_len + 1) -> (input_ids, targets). A class so workers can pickle it."""

    def __init__(self, pad: int, eos_id: int):
        self.pad, self.eos_id = pad, eos_id

    def __call__(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        return split_rows(torch.from_numpy(np.stack(rows).astype(np.int64)), self.pad, self.eos_id)


def unigram_ppl(train_counts, targets) -> float:
    """Perplexity of targets (IGNORE skipped) under add-one smoothed unigram frequencies:
    p(t) = (count(t) + 1) / (N + V), V = len(train_counts). The 'learned nothing' reference."""
    counts = np.asarray(train_counts, dtype=np.float64)
    t = np.asarray(targets).reshape(-1)
    t = t[t != IGNORE]
    logp = np.log(counts + 1) - np.log(counts.sum() + len(counts))
    return float(np.exp(-logp[t].mean()))


class TextDataModule(L.LightningDataModule):
    def __init__(self, data_cfg, seq_len: int, batch_size: int, seed: int = 0, val_tokens: int = 262144):
        super().__init__()
        self.cfg, self.seq_len, self.batch_size = data_cfg, int(seq_len), int(batch_size)
        self.seed, self.val_tokens = int(seed), int(val_tokens)
        self.cache_dir = Path(data_cfg.cache_dir)
        self._docs: dict[str, list[Document]] | None = None
        self._fingerprints: dict[str, str] = {}
        self._tokenizer: Tokenizer | None = None
        self._paths: dict[str, Path] | None = None  # chunk folders of the document splits
        self._val: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        self.prepared = open_prepared(data_cfg, data_cfg.corpus) if is_prepared(data_cfg.corpus) else None
        # eval domains (and ood) that are prepared datasets: name -> dataset (its validation split)
        evals = {"ood": data_cfg.ood_corpus, **dict(getattr(data_cfg, "eval", {}) or {})}
        self._eval_prepared = {n: open_prepared(data_cfg, s) for n, s in evals.items() if s and is_prepared(s)}
        self._eval_docs = {n: s for n, s in evals.items() if s and n not in self._eval_prepared}
        check_data(data_cfg, self.seq_len)  # a wrong tokenizer or missing split: one line, before anything

    # -- corpus and tokenizer (lazy: reading them is all vocab_size and the fingerprints need) --

    @property
    def docs(self) -> dict[str, list[Document]]:
        """'train', 'val' documents (not for a prepared corpus), then 'ood' and eval documents."""
        if self._docs is None:
            self._docs = {}
            if self.prepared is None:
                docs = load_corpus(self.cfg.corpus)
                train, val = split_documents(docs, self.cfg.val_fraction)
                self._docs = {"train": train, "val": val}
                self._fingerprints["corpus"] = fingerprint(docs)
            else:
                self._fingerprints["corpus"] = self.prepared.fingerprint
            for name, spec in self._eval_docs.items():
                self._docs[name] = load_corpus(spec)
            self._fingerprints.update({k: fingerprint(v) for k, v in self._docs.items()})
            self._fingerprints.update({k: ds.fingerprint for k, ds in self._eval_prepared.items()})
        return self._docs

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            if self.prepared is not None:
                self._tokenizer = self.prepared.tokenizer_for(self.cfg.tokenizer)
            else:
                self._tokenizer = build_tokenizer(self.cfg, self.docs["train"], self.cache_dir)
            for name, ds in self._eval_prepared.items():  # the same tokenizer, or one line
                if ds.meta["tokenizer"]["fingerprint"] != self._tokenizer.fingerprint:
                    raise CorpusError(f"eval domain {name!r} ({ds.uri}) was prepared with tokenizer "
                                      f"{ds.meta['tokenizer']['name']}, not the cell's {self._tokenizer.name}")
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def fingerprints(self) -> dict[str, str]:
        """sha256 of: 'corpus' (all its texts; a prepared corpus: its sources), each document split
        and eval domain, 'tokenizer'."""
        _ = self.docs  # loads the corpus and fills _fingerprints
        return {**self._fingerprints, "tokenizer": self.tokenizer.fingerprint}

    @property
    def corpus_fingerprint(self) -> str:
        return self.fingerprints["corpus"]

    @property
    def tokenizer_fingerprint(self) -> str:
        return self.tokenizer.fingerprint

    @property
    def val_names(self) -> list[str]:
        """Name of each val_dataloader loader, in order: 'val', 'ood' if set, then data.eval's names."""
        evals = list(getattr(self.cfg, "eval", {}) or {})
        return ["val"] + (["ood"] if self.cfg.ood_corpus else []) + evals

    # -- Lightning hooks --

    def prepare_data(self) -> None:
        """Train/load the tokenizer and build (or find cached) the chunks of every document split."""
        if self._paths is None:
            self._paths = {split: build_chunks(docs, self.tokenizer, self.seq_len, self.cfg.packing, split,
                                               self.cache_dir) for split, docs in self.docs.items()}

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()  # cache hits when Lightning ran it already (on another rank, too)
        if self._val is None:
            self._val = {split: self._read_val(split) for split in self.val_names}

    def train_dataloader(self):
        from litdata import StreamingDataLoader

        dataset = self._stream("train", shuffle=True)
        if len(dataset) < self.batch_size:
            raise ValueError(f"training split has {len(dataset)} rows of {self.seq_len + 1} tokens, "
                             f"fewer than batch_size {self.batch_size}")
        return StreamingDataLoader(dataset, batch_size=self.batch_size, num_workers=self.cfg.num_workers,
                                   collate_fn=self._collate(), drop_last=True)

    def val_dataloader(self):
        self.setup()
        loaders = [DataLoader(TensorDataset(*self._val[s]), batch_size=self.batch_size, shuffle=False)
                   for s in self.val_names]
        return loaders if len(loaders) > 1 else loaders[0]

    def unigram_ppl(self, split: str = "val") -> float:
        """Unigram PPL of the rows val_dataloader yields for ``split`` (a val_names entry) under the
        training split's token frequencies (add-one smoothing)."""
        self.setup()
        counts = self.prepared.counts() if self.prepared else np.load(self._paths["train"] / "counts.npy")
        return unigram_ppl(counts, self._val[split][1].numpy())

    # -- helpers --

    def _collate(self) -> Collate:
        return Collate(pad_id(token_dtype(self.vocab_size)), self.tokenizer.eos_id)

    def _stream(self, split: str, shuffle: bool = False):
        """The litdata dataset of a split name: a document split's chunks, or a prepared dataset's
        train split ('train') or validation split ('val' or an eval domain)."""
        from litdata import StreamingDataset, TokensLoader

        ds = self._eval_prepared.get(split) or (self.prepared if split in ("train", "val") else None)
        if ds is not None:
            part = "train" if split == "train" else ds.val_split
            return ds.stream(part, self.seq_len, shuffle=shuffle, seed=self.seed)
        self.prepare_data()
        return StreamingDataset(str(self._paths[split] / "data"), item_loader=TokensLoader(block_size=self.seq_len + 1),
                                shuffle=shuffle, seed=self.seed, drop_last=shuffle)

    def _read_val(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        dataset = self._stream(split)
        if len(dataset) == 0:
            ds = self._eval_prepared.get(split) or self.prepared
            tokens = read_meta(self._paths[split])["tokens"] if split in self._paths else ds.tokens(ds.val_split)
            raise ValueError(f"{split} split has {tokens} tokens, fewer than one row of seq_len + 1 = "
                             f"{self.seq_len + 1}")
        n = min(len(dataset), max(1, self.val_tokens // self.seq_len))
        # int(): litdata rejects numpy integers as indices ("expects a chunked Index")
        return self._collate()([dataset[int(i)] for i in (np.arange(n) * len(dataset)) // n])
