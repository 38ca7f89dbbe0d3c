"""The data side: corpora, split, tokenizers, litdata chunks, batches, unigram reference.

Most tests run on a tiny corpus written to tmp_path (slices of the bundled plays); the bundled
corpus itself is read, split, BPE-trained and turned into batches once each.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import signal
import time
from collections import Counter

import lightning as L
import numpy as np
import pytest
import torch

import datamodules.chunks as chunks_mod
import datamodules.tokenizers as tok_mod
from bench.run.config.schema import DataConfig
from datamodules import (
    ByteTokenizer, CorpusError, Document, TokenizerError, build_chunks, build_tokenizer, fingerprint, load_corpus,
    split_documents, train_bpe,
)
from datamodules.datamodule import IGNORE, TextDataModule, unigram_ppl


@pytest.fixture(scope="module")
def bundled():
    return load_corpus("bundled")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, bundled):
    """Eight short documents of very different lengths, one .txt file each."""
    folder = tmp_path_factory.mktemp("tiny")
    for i, d in enumerate(bundled[:8]):
        (folder / f"doc{i}.txt").write_text(d.text[1000: 1000 + 300 * (i + 1) ** 2])
    return folder


def cfg(tmp_path, corpus, **kw) -> DataConfig:
    return DataConfig(corpus=str(corpus), cache_dir=str(tmp_path / "cache"), **{"ood_corpus": None, **kw})


def dm_for(tmp_path, corpus, seq_len=16, batch_size=4, seed=0, val_tokens=256, **kw) -> TextDataModule:
    dm = TextDataModule(cfg(tmp_path, corpus, **kw), seq_len=seq_len, batch_size=batch_size, seed=seed,
                        val_tokens=val_tokens)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def batches(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


# ---- corpus ---------------------------------------------------------------------------------------

def test_bundled_corpus_is_real_and_big_enough(bundled):
    assert len(bundled) == 42 and len({d.title for d in bundled}) == 42
    assert sum(len(d.text.encode()) for d in bundled) >= 4_000_000
    assert any(d.title == "Hamlet" and "To be, or not to be" in d.text for d in bundled)
    kjv = load_corpus("kjv")
    assert len(kjv) == 66 and kjv[0].title == "Genesis" and kjv[-1].title == "Revelation"
    assert kjv[0].text.startswith("Genesis\n\nChapter 1\nIn the beginning God created the heaven and the earth.")


def test_split_is_deterministic_disjoint_and_by_title(bundled):
    train, val = split_documents(bundled, 0.05)
    assert (train, val) == split_documents(list(bundled), 0.05)
    assert len(val) == 2 and len(train) == 40
    assert {d.title for d in train}.isdisjoint({d.title for d in val})
    assert sorted(d.title for d in train + val) == sorted(d.title for d in bundled)
    # membership depends on the titles only: reordering the corpus changes nothing
    assert {d.title for d in split_documents(bundled[::-1], 0.05)[1]} == {d.title for d in val}
    # a larger fraction keeps the smaller one's val documents (same ranking)
    assert {d.title for d in val} <= {d.title for d in split_documents(bundled, 0.2)[1]}
    # pinned: the split must never change between versions or machines
    assert sorted(d.title for d in val) == ["Much Ado About Nothing", "Romeo and Juliet"]


def test_split_edge_cases():
    two = [Document("a", "x" * 10), Document("b", "y" * 10)]
    train, val = split_documents(two, 0.01)
    assert len(train) == 1 and len(val) == 1  # never an empty side
    one = [Document("solo", "line one\nline two\nline three\nline four\n")]
    train, val = split_documents(one, 0.3)
    assert train[0].text + val[0].text == one[0].text and val[0].text.startswith("line")
    with pytest.raises(ValueError, match="val_fraction"):
        split_documents(two, 0.0)


def test_loading_txt_jsonl_parquet_and_folders(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.txt").write_text("alpha text")
    (tmp_path / "b.jsonl").write_text(json.dumps({"title": "B1", "text": "beta"}) + "\n\n"
                                      + json.dumps({"text": "gamma"}) + "\n" + json.dumps({"text": ""}) + "\n")
    pq.write_table(pa.table({"text": ["delta", "epsilon"]}), tmp_path / "c.parquet")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "z.txt").write_text("zeta")
    (sub / "skip.md").write_text("not a corpus file")
    import gzip
    with gzip.open(sub / "y.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "eta"}) + "\n")

    docs = load_corpus(f"{tmp_path / 'a.txt'},{tmp_path / 'b.jsonl'}, {tmp_path / 'c.parquet'}")
    assert [d.text for d in docs] == ["alpha text", "beta", "gamma", "delta", "epsilon"]
    assert [d.title for d in docs] == ["a.txt", "B1", "b.jsonl:3", "c.parquet:0", "c.parquet:1"]
    assert [d.text for d in load_corpus(str(sub))] == ["eta", "zeta"]  # sorted paths, .md ignored
    assert len(load_corpus(str(tmp_path))) == 7
    assert fingerprint(docs) == fingerprint(load_corpus(f"{tmp_path / 'a.txt'},{tmp_path / 'b.jsonl'},"
                                                        f"{tmp_path / 'c.parquet'}"))
    assert fingerprint(docs) != fingerprint(docs[:-1])
    # length-prefixed: moving a boundary changes the fingerprint
    assert fingerprint([Document("", "ab"), Document("", "c")]) != fingerprint([Document("", "a"), Document("", "bc")])


def test_missing_and_bad_paths_raise_one_line_errors(tmp_path):
    with pytest.raises(CorpusError) as e:
        load_corpus(f"{tmp_path}/nope.txt")
    assert isinstance(e.value, ValueError) and "nope.txt" in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "bad.jsonl").write_text('{"title": "no text field"}\n')
    with pytest.raises(CorpusError, match=r"bad.jsonl:1"):
        load_corpus(str(tmp_path / "bad.jsonl"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no .txt"):
        load_corpus(str(tmp_path / "empty"))
    with pytest.raises(TokenizerError, match="missing.json"):
        build_tokenizer(DataConfig(tokenizer=str(tmp_path / "missing.json")), [], tmp_path)
    with pytest.raises(ValueError, match="Did you mean 'bpe'"):
        build_tokenizer(DataConfig(tokenizer="bpee"), [], tmp_path)


# ---- tokenizers -----------------------------------------------------------------------------------

def test_bytes_tokenizer_roundtrip():
    tok = ByteTokenizer()
    assert (tok.vocab_size, tok.eos_id) == (256, 0)
    for s in ["", "plain ASCII", "naïve café – “quotes” 😀\n\tend", "Ber.\nWho's there?"]:
        ids = tok.encode(s)
        assert ids == list(s.encode("utf-8")) and tok.decode(ids) == s
        assert tok.encode_batch([s])[0].tolist() == ids
    assert tok.eos_id not in tok.encode("any real text")


def test_bpe_trains_on_train_split_and_caches(tmp_path, bundled, monkeypatch):
    train, _ = split_documents(bundled, 0.05)
    c = DataConfig(tokenizer="bpe", bpe_vocab_size=1024, cache_dir=str(tmp_path))
    t = time.perf_counter()
    tok = build_tokenizer(c, train, tmp_path)
    first = time.perf_counter() - t
    assert tok.vocab_size == 1024 and tok.eos_id == 0
    text = "Now is the winter of our discontent\nMade glorious summer — naïve 😀"
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(train[0].text)) < len(train[0].text.encode()) / 2  # it learned merges
    files = list((tmp_path / "tokenizers").glob("bpe-1024-*.json"))
    assert len(files) == 1

    monkeypatch.setattr(tok_mod, "train_bpe", lambda *a, **k: pytest.fail("retrained a cached BPE"))
    t = time.perf_counter()
    again = build_tokenizer(c, train, tmp_path)
    assert time.perf_counter() - t < max(0.5, first / 3)
    assert again.fingerprint == tok.fingerprint and again.encode(text) == tok.encode(text)
    # another training split is another tokenizer
    monkeypatch.undo()
    other = build_tokenizer(c, train[:5], tmp_path)
    assert other.fingerprint != tok.fingerprint
    assert len(list((tmp_path / "tokenizers").glob("bpe-1024-*.json"))) == 2


def test_tokenizer_json_and_tiktoken_paths(tmp_path):
    texts = ["the cat sat on the mat\n" * 20, "a dog ate the hat\n" * 20]
    trained = train_bpe(texts, 300)
    path = tmp_path / "tokenizer.json"
    trained.save(path)
    tok = build_tokenizer(DataConfig(tokenizer=str(path)), [], tmp_path)
    assert tok.fingerprint == trained.fingerprint and tok.eos_id == trained.eos_id
    assert tok.encode("the cat ate the hat") == trained.encode("the cat ate the hat")
    assert tok.decode(tok.encode("the mat\n")) == "the mat\n"

    # a tiktoken file: the 256 bytes plus two merges; EOS goes after the highest rank
    ranks = [bytes([i]) for i in range(256)] + [b"th", b"the"]
    tk = tmp_path / "tiny.tiktoken"
    tk.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for r, t in enumerate(ranks)))
    tok = build_tokenizer(DataConfig(tokenizer=str(tk)), [], tmp_path)
    assert (tok.vocab_size, tok.eos_id) == (259, 258)
    assert tok.encode("the") == [257] and tok.decode(tok.encode("then thy ünï")) == "then thy ünï"
    (tmp_path / "junk.bpe").write_text("not a tokenizer\n")
    with pytest.raises(TokenizerError, match="junk.bpe"):
        build_tokenizer(DataConfig(tokenizer=str(tmp_path / "junk.bpe")), [], tmp_path)


# ---- litdata chunks and batches -------------------------------------------------------------------

def test_packed_batches_shape_dtype_and_shift(tmp_path, tiny_dir):
    dm = dm_for(tmp_path, tiny_dir, seq_len=16, batch_size=4)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1]) and (y != IGNORE).all()
    # every row is a slice of the packed stream (documents + EOS) at a multiple of seq_len + 1
    stream = b"".join(d.text.encode() + b"\0" for d in dm.docs["train"])
    blocks = {stream[i: i + 17] for i in range(0, len(stream) - 16, 17)}
    for row_x, row_y in zip(x, y):
        assert bytes(row_x.tolist() + row_y[-1:].tolist()) in blocks
    # validation: one loader (no ood), rows = val_tokens // seq_len, in a fixed order
    val = dm.val_dataloader()
    vx, vy = next(iter(val))
    assert len(val.dataset) == 256 // 16 and torch.equal(vx[:, 1:], vy[:, :-1])
    assert torch.equal(vx, next(iter(dm.val_dataloader()))[0])


def test_truncation_mode_pads_with_ignored_targets(tmp_path):
    docs = ["short one", "x" * 40, "a bit longer than sixteen bytes"]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"title": f"d{i}", "text": t}) + "\n" for i, t in enumerate(docs)))
    tok = ByteTokenizer()
    path = build_chunks([Document(f"d{i}", t) for i, t in enumerate(docs)], tok, 16, False, "train", tmp_path)
    dm = TextDataModule(cfg(tmp_path, corpus, packing=False), seq_len=16, batch_size=1, seed=0, val_tokens=16)
    dm._paths = {"train": path}
    ds = dm._stream("train")
    rows = [dm._collate()([ds[i]]) for i in range(len(ds))]
    # rows per document: ceil((len + 1 - 1) / 16) -> 1, 3, 2
    assert len(rows) == 6
    x0, y0 = rows[0]
    assert bytes(x0[0, :10].tolist()) == b"short one\0" and (x0[0, 10:] == tok.eos_id).all()
    assert bytes(y0[0, :9].tolist()) == b"hort one\0" and (y0[0, 9:] == IGNORE).all()
    # the long document: stride 16, so row 2 starts where row 1's last target was
    (x1, y1), (x2, y2), (x3, y3) = rows[1:4]
    assert x2[0, 0] == y1[0, -1] and bytes(x3[0, :9].tolist()) == b"xxxxxxxx\0"
    # a document of n tokens + EOS has n real targets (every next-token pair once, EOS included)
    assert sum(int((y != IGNORE).sum()) for _, y in rows) == sum(len(t) for t in docs)
    # the data module's loader, over one epoch
    dm2 = dm_for(tmp_path, corpus, seq_len=16, batch_size=2, packing=False, val_fraction=0.34)
    epoch = list(dm2.train_dataloader())
    assert all(x.shape == y.shape == (2, 16) for x, y in epoch)
    assert any((y == IGNORE).any() for _, y in epoch)
    assert all(((y == IGNORE) | (y == torch.cat([x[:, 1:], y[:, -1:]], 1))).all() for x, y in epoch)


def test_same_seed_same_batches(tmp_path, tiny_dir):
    a = dm_for(tmp_path, tiny_dir, seed=3)
    b = dm_for(tmp_path, tiny_dir, seed=3)
    first = batches(a.train_dataloader(), 3)
    for (xa, ya), (xb, yb) in zip(first, batches(b.train_dataloader(), 3)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # a fresh loader from the same module starts over (two cells, one shared data module)
    assert torch.equal(first[0][0], batches(a.train_dataloader(), 1)[0][0])
    c = dm_for(tmp_path, tiny_dir, seed=4)
    assert not torch.equal(first[0][0], batches(c.train_dataloader(), 1)[0][0])
    # shuffled: not the stream order
    unshuffled = c._stream("train")
    assert not torch.equal(first[0][0][0], torch.from_numpy(unshuffled[0][:-1].astype(np.int64)))
    # the loader keeps going past one epoch (new order each epoch)
    loader = a.train_dataloader()
    n = len(loader)
    epoch1 = [x for x, _ in loader]
    epoch2 = [x for x, _ in loader]
    assert len(epoch1) == len(epoch2) == n and not all(torch.equal(p, q) for p, q in zip(epoch1, epoch2))


def test_unigram_ppl_by_hand(tmp_path, tiny_dir):
    # counts (3, 1, 0), V = 3, N = 4: p = 4/7, 2/7, 1/7; targets 0, 2, 1 -> (343 / 8) ** (1/3) = 3.5
    assert unigram_ppl(np.array([3, 1, 0]), np.array([[0, 2], [IGNORE, 1]])) == pytest.approx(3.5)
    # the data module's value, recomputed independently from the texts with a Counter
    dm = dm_for(tmp_path, tiny_dir, seq_len=16, val_tokens=10_000)
    counts = Counter(b"".join(d.text.encode() + b"\0" for d in dm.docs["train"]))
    n = sum(counts.values())
    _, vy = dm._val["val"]
    targets = vy[vy != IGNORE].tolist()
    expect = math.exp(-sum(math.log((counts[t] + 1) / (n + 256)) for t in targets) / len(targets))
    assert dm.unigram_ppl() == pytest.approx(expect, rel=1e-9)


def test_cache_hit_rebuild_on_change_and_no_half_cache(tmp_path, monkeypatch):
    docs = [Document("a", "first document " * 20), Document("b", "second document " * 20)]
    tok = ByteTokenizer()
    sigint = signal.getsignal(signal.SIGINT)
    path = build_chunks(docs, tok, 8, True, "train", tmp_path)
    assert signal.getsignal(signal.SIGINT) is sigint  # litdata's os._exit(0) handler was taken back out
    assert (path / "data" / "index.json").exists() and np.load(path / "counts.npy").sum() == sum(
        len(d.text) + 1 for d in docs)
    calls = []
    real = chunks_mod._optimize
    monkeypatch.setattr(chunks_mod, "_optimize", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert build_chunks(docs, tok, 8, True, "train", tmp_path) == path and not calls  # cache hit
    assert build_chunks(docs, tok, 32, True, "train", tmp_path) == path  # packing ignores seq_len
    changed = [docs[0], Document("b", docs[1].text + "!")]
    assert build_chunks(changed, tok, 8, True, "train", tmp_path) != path and len(calls) == 1
    assert build_chunks(docs, tok, 8, False, "train", tmp_path) != path  # mode changes the key
    assert build_chunks(docs, tok, 8, True, "val", tmp_path) != path  # so does the split

    # a build killed half-way leaves nothing that reads as a cache: the next one rebuilds
    def killed(items, out, **kw):
        out.mkdir(parents=True)
        (out / "index.json").write_text("{}")
        raise KeyboardInterrupt

    new = [Document("c", "third " * 30)]
    monkeypatch.setattr(chunks_mod, "_optimize", killed)
    with pytest.raises(KeyboardInterrupt):
        build_chunks(new, tok, 8, True, "train", tmp_path)
    key = chunks_mod.cache_key(fingerprint(new), tok.fingerprint, 8, True, "train")
    assert not (tmp_path / "chunks" / f"train-{key}").exists()
    # a SIGKILLed build skips its cleanup: its temp folder is removed by the next build of that key
    stale = tmp_path / "chunks" / f".train-{key}.tmp999-dead" / "data"
    stale.mkdir(parents=True)
    (stale / "index.json").write_text("{}")
    monkeypatch.setattr(chunks_mod, "_optimize", real)
    again = build_chunks(new, tok, 8, True, "train", tmp_path)
    assert again.name == f"train-{key}" and json.loads((again / "meta.json").read_text())["tokens"] == 181
    assert not list((tmp_path / "chunks").glob(".*tmp*"))


# ---- the real bundled corpus, end to end ----------------------------------------------------------

def test_bundled_end_to_end_with_lightning(tmp_path):
    t = time.perf_counter()
    dm = TextDataModule(DataConfig(cache_dir=str(tmp_path)), seq_len=64, batch_size=8, seed=0, val_tokens=4096)
    assert dm.vocab_size == 256
    dm.prepare_data()
    dm.setup("fit")
    assert time.perf_counter() - t < 30  # measured ~1 s on 2 cores
    assert dm.val_names == ["val", "ood"] and len(dm.docs["ood"]) == 66
    assert set(dm.fingerprints) == {"corpus", "train", "val", "ood", "tokenizer"}
    val, ood = dm.val_dataloader()
    assert len(val.dataset) == len(ood.dataset) == 4096 // 64
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 64) and torch.equal(x[:, 1:], y[:, :-1])
    # 'learned nothing' reference: well below uniform (256), well above a trained model
    assert 15 < dm.unigram_ppl() < 40 and 15 < dm.unigram_ppl("ood") < 40

    class Bigram(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(256, 256)
            self.seen = Counter()

        def training_step(self, batch, i):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.emb(x).flatten(0, 1), y.flatten(), ignore_index=IGNORE)

        def validation_step(self, batch, i, dataloader_idx=0):
            self.seen[dataloader_idx] += batch[0].shape[0]

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = Bigram()
    trainer = L.Trainer(max_steps=5, val_check_interval=5, check_val_every_n_epoch=None, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        num_sanity_val_steps=0, accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 5 and model.seen == {0: 64, 1: 64}


def test_config_fields_used_exist():
    names = {f.name for f in dataclasses.fields(DataConfig)}
    assert {"corpus", "ood_corpus", "tokenizer", "bpe_vocab_size", "packing", "val_fraction", "num_workers",
            "cache_dir"} <= names
