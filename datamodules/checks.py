"""Every corpus a data config names can be read and pairs with its tokenizer: checked before a
cell's id is hashed (bench/run/config/data_checks.py), with no Lightning loaded."""

from __future__ import annotations

from .corpus import CorpusError, check_corpus
from .prepared import PreparedCorpus, is_prepared

RESERVED = ("train", "val", "ood")  # data.eval names the splits already use


def open_prepared(cfg, spec: str) -> PreparedCorpus:
    return PreparedCorpus.open(spec, cfg.storage_options, cfg.cache_dir, cfg.max_cache_size)


def check_data(cfg, seq_len: int) -> None:
    """Every corpus of a DataConfig can be read and pairs with its tokenizer; one line otherwise
    (CorpusError). Prepared datasets are opened (their meta.json fetched) and checked for a
    tokenizer mismatch and a missing or too small validation split."""
    for name in cfg.eval:
        if name in RESERVED or not name.replace("_", "").replace("-", "").isalnum():
            raise CorpusError(f"data.eval name {name!r} must be letters, digits, '_' or '-' and not one of "
                              f"{', '.join(RESERVED)}")
    main = open_prepared(cfg, cfg.corpus) if is_prepared(cfg.corpus) else None
    if main is not None and main.packing != cfg.packing:
        raise CorpusError(f"{cfg.corpus} was prepared with " + ("packing" if main.packing else
                          f"--truncate {main.meta['seq_len']}") + f", but the cell sets data.packing={cfg.packing} "
                          "(prepare it again, or set data.packing to match)")
    for spec in [cfg.corpus, cfg.ood_corpus, *cfg.eval.values()]:
        if not spec:
            continue
        if not is_prepared(spec):
            check_corpus(spec)
            continue
        ds = open_prepared(cfg, spec)
        ds.check(seq_len)
        if main is not None and ds is not main:  # every prepared eval set shares the corpus's tokenizer
            if ds.meta["tokenizer"]["fingerprint"] != main.tokenizer_for(cfg.tokenizer).fingerprint:
                raise CorpusError(f"{spec} was prepared with tokenizer {ds.meta['tokenizer']['name']}, "
                                  f"{cfg.corpus} with {main.meta['tokenizer']['name']}: they cannot share a cell")
        elif cfg.tokenizer != "bpe":  # a BPE is trained at run time: its fingerprint is checked then
            ds.tokenizer_for(cfg.tokenizer)
    if cfg.tokenizer == "dataset" and not is_prepared(cfg.corpus):
        raise CorpusError("data.tokenizer 'dataset' needs a prepared corpus (a folder or URI written by "
                          f"`bench data prepare`), not {cfg.corpus}")
