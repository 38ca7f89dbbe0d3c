"""The data side of the harness: corpora, tokenizers, litdata chunks and the LightningDataModule.

    from datamodules.datamodule import TextDataModule
    dm = TextDataModule(data_cfg, seq_len=128, batch_size=16, seed=0, val_tokens=262144)
    dm.prepare_data(); dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))      # int64 (16, 128) each; y = x shifted, -100 = ignore
    dm.vocab_size, dm.corpus_fingerprint, dm.tokenizer_fingerprint, dm.unigram_ppl()

Where things live: corpus.py (loading, split, fingerprints), tokenizers.py (registry),
chunks.py (litdata.optimize cache), checks.py (a data config's corpora readable), datamodule.py
(loaders, unigram reference), prepare.py (`bench data prepare`: large corpora -> a streamable
litdata dataset), prepared.py (reading one, local or s3://), speed.py (loader throughput).

The package exports what needs no Lightning; the data module is imported from datamodule.py, so
preparing data and checking configs start without Lightning's seconds of import.
"""

import os

# litdata asks PyPI for a newer version on import; runs must not touch the network.
os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")

from .chunks import build_chunks, cache_key  # noqa: E402
from .corpus import BUNDLED, CorpusError, Document, fingerprint, load_corpus, split_documents  # noqa: E402
from .checks import check_data  # noqa: E402
from .prepared import PreparedCorpus, is_prepared  # noqa: E402
from .tokenizers import (  # noqa: E402
    TOKENIZERS, ByteTokenizer, HFTokenizer, TiktokenTokenizer, Tokenizer, TokenizerError, build_tokenizer,
    load_tokenizer, train_bpe,
)

__all__ = [
    "BUNDLED", "TOKENIZERS", "ByteTokenizer", "CorpusError", "Document", "HFTokenizer", "TiktokenTokenizer",
    "Tokenizer", "TokenizerError", "build_chunks", "build_tokenizer", "cache_key", "PreparedCorpus", "check_data",
    "fingerprint", "is_prepared", "load_corpus", "load_tokenizer", "split_documents", "train_bpe",
]
