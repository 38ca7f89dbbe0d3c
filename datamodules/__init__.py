"""The data side of the harness: corpora, tokenizers, litdata chunks and the LightningDataModule.

    from datamodules import TextDataModule
    dm = TextDataModule(data_cfg, seq_len=128, batch_size=16, seed=0, val_tokens=262144)
    dm.prepare_data(); dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))      # int64 (16, 128) each; y = x shifted, -100 = ignore
    dm.vocab_size, dm.corpus_fingerprint, dm.tokenizer_fingerprint, dm.unigram_ppl()

Where things live: corpus.py (loading, split, fingerprints), tokenizers.py (registry),
chunks.py (litdata.optimize cache), datamodule.py (loaders, unigram reference), prepare.py
(`bench data prepare`: large corpora -> a streamable litdata dataset), prepared.py (reading one,
local or s3://), speed.py (loader throughput).
"""

import os

# litdata asks PyPI for a newer version on import; runs must not touch the network.
os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")

from .chunks import build_chunks, cache_key  # noqa: E402
from .corpus import BUNDLED, CorpusError, Document, fingerprint, load_corpus, split_documents  # noqa: E402
from .datamodule import IGNORE, TextDataModule, check_data, split_rows, unigram_ppl  # noqa: E402
from .prepared import PreparedCorpus, is_prepared  # noqa: E402
from .tokenizers import (  # noqa: E402
    TOKENIZERS, ByteTokenizer, HFTokenizer, TiktokenTokenizer, Tokenizer, TokenizerError, build_tokenizer,
    load_tokenizer, train_bpe,
)

__all__ = [
    "BUNDLED", "IGNORE", "TOKENIZERS", "ByteTokenizer", "CorpusError", "Document", "HFTokenizer", "TextDataModule",
    "TiktokenTokenizer", "Tokenizer", "TokenizerError", "build_chunks", "build_tokenizer", "cache_key",
    "PreparedCorpus", "check_data", "fingerprint", "is_prepared", "load_corpus", "load_tokenizer", "split_documents",
    "split_rows", "train_bpe", "unigram_ppl",
]
