"""`bench data prepare` and prepared corpora in-process: formats, metadata, split, truncation, resume,
DDP partition, eval domains, the loader's speed and a stuck writer (S3, kills, signals and full disks:
tests/e2e/test_prepare.py)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

import datamodules.prepare as prep
from bench.run.config.schema import DataConfig
from bench.run.config.presets import resolve
from corpus_files import documents, paragraphs, stream_tokens, streamed_by_litdata
from datamodules import CorpusError, PreparedCorpus, train_bpe
from datamodules.datamodule import IGNORE, TextDataModule
from datamodules.prepare import prepare


# ---- preparing --------------------------------------------------------------------------------

def test_every_format_is_read_and_split_by_the_fixed_rule(sources, packed):
    folder, docs = sources
    meta = json.loads((packed / "meta.json").read_text())
    names = [s["name"] for s in meta["sources"]]
    assert names == [f"{folder.name}/{n}" for n in ("a.txt", "b.jsonl", "c.json.gz", "d.jsonl.zst", "sub/e.parquet")]
    # which document is held out follows is_val(file, document number) alone
    per_file = [docs[:1], docs[1:50], docs[50:100], docs[100:150], docs[150:200]]
    val = [t for name, texts in zip(names, per_file) for i, t in enumerate(texts) if prep.is_val(name, i, 0.1)]
    train = [t for name, texts in zip(names, per_file) for i, t in enumerate(texts) if not prep.is_val(name, i, 0.1)]
    assert 5 < len(val) < 40 and len(train) + len(val) == 200
    for split in ("train", "val"):  # the tests' fast reader reads what litdata's does
        assert np.array_equal(stream_tokens(packed, split), streamed_by_litdata(packed, split))
    got_train, got_val = documents(stream_tokens(packed, "train")), documents(stream_tokens(packed, "val"))
    assert sorted(got_train) == sorted(t.encode() for t in train)  # two workers: file order within a worker
    assert sorted(got_val) == sorted(t.encode() for t in val)
    s = meta["splits"]
    assert s["train"] == {"documents": len(train), "tokens": sum(len(t.encode()) + 1 for t in train), "rows": 0}
    assert s["val"]["documents"] == len(val) and s["val"]["tokens"] == sum(len(t.encode()) + 1 for t in val)
    assert meta["tokenizer"]["file"] is None and meta["packing"] and meta["val_split"] == "val"
    assert [s["sha256"] for s in meta["sources"]][0] == __import__("hashlib").sha256(
        (folder / "a.txt").read_bytes()).hexdigest()
    counts = np.load(packed / "counts.npy")
    assert counts.sum() == s["train"]["tokens"] and counts[0] == len(train)
    assert not (packed / ".work").exists()
    # a rerun of the same command is a no-op; other settings into the same folder are refused
    assert prepare(str(folder), "bytes", packed, workers=2, val_fraction=0.1) == meta
    with pytest.raises(CorpusError, match="different prepared dataset"):
        prepare(str(folder), "bytes", packed, workers=2, val_fraction=0.2)


def test_tokenizer_file_travels_with_the_dataset(tmp_path, sources):
    tok = train_bpe(paragraphs(100), 300)
    tok.save(tmp_path / "tok.json")
    out = tmp_path / "ds"
    meta = prepare(str(sources[0] / "b.jsonl"), str(tmp_path / "tok.json"), out, val_fraction=0.2)
    assert meta["tokenizer"]["file"] == "tokenizer.json" and meta["tokenizer"]["fingerprint"] == tok.fingerprint
    ds = PreparedCorpus.open(str(out))
    assert ds.tokenizer_for("dataset").fingerprint == tok.fingerprint
    assert ds.tokenizer_for(str(tmp_path / "tok.json")).encode("to be") == tok.encode("to be")
    with pytest.raises(CorpusError, match="not the cell's bytes") as e:
        ds.tokenizer_for("bytes")
    assert "\n" not in str(e.value)
    stream = stream_tokens(out, "train").astype(np.int64)
    first = stream[: np.flatnonzero(stream == tok.eos_id)[0]]
    assert tok.decode(first.tolist()) == json.loads((sources[0] / "b.jsonl").read_text().splitlines()[
        next(i for i in range(49) if not prep.is_val("b.jsonl", i, 0.2))])["text"]


def test_truncation_rows_match_gpas_truncate_or_pad(tmp_path, sources):
    out = tmp_path / "trunc"
    meta = prepare(str(sources[0] / "b.jsonl"), "bytes", out, truncate=32, val_fraction=0.2)
    assert not meta["packing"] and meta["seq_len"] == 32
    dm = TextDataModule(DataConfig(corpus=str(out), ood_corpus=None, packing=False, cache_dir=str(tmp_path)),
                        seq_len=32, batch_size=4, val_tokens=64)
    ds = dm._stream("train")
    assert len(ds) == meta["splits"]["train"]["rows"]
    rows = [dm._collate()([ds[i]]) for i in range(len(ds))]
    # every document + EOS: n real targets per document of n tokens, the rest ignored
    assert sum(int((y != IGNORE).sum()) for _, y in rows) == meta["splits"]["train"]["tokens"] - meta["splits"][
        "train"]["documents"]
    assert any((y == IGNORE).any() for _, y in rows)
    x, y = next(iter(dm.train_dataloader()))
    real = y[:, :-1] != IGNORE
    assert x.shape == (4, 32) and real.any() and torch.equal(y[:, :-1][real], x[:, 1:][real])
    # the cell must match the dataset's mode and length
    for bad, msg in ((dict(packing=True), "truncate 32"), (dict(packing=False), "block_size is 16")):
        with pytest.raises(CorpusError, match=msg):
            TextDataModule(DataConfig(corpus=str(out), ood_corpus=None, cache_dir=str(tmp_path), **bad),
                           seq_len=32 if bad["packing"] else 16, batch_size=4)


def test_a_killed_preparation_resumes_and_equals_an_uninterrupted_one(tmp_path, sources, monkeypatch):
    src = str(sources[0])
    straight = tmp_path / "straight"
    prepare(src, "bytes", straight, val_fraction=0.1, files_per_part=1)
    real, calls = prep._optimize, []

    def dies_on_third_part(items, out, **kw):
        calls.append(out.name)
        if len(calls) == 3:  # litdata wrote some of part 2, then the process died
            out.mkdir(parents=True)
            (out / "chunk-0-0.bin").write_bytes(b"partial")
            raise KeyboardInterrupt
        return real(items, out, **kw)

    monkeypatch.setattr(prep, "_optimize", dies_on_third_part)
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        prepare(src, "bytes", resumed, val_fraction=0.1, files_per_part=1)
    assert not (resumed / "meta.json").exists()  # never reads as complete
    assert sorted(p.name for p in (resumed / ".work").glob("part-*.json")) == ["part-00000.json", "part-00001.json"]
    calls.clear()
    monkeypatch.setattr(prep, "_optimize", lambda items, out, **kw: calls.append(out.name) or real(items, out, **kw))
    meta = prepare(src, "bytes", resumed, val_fraction=0.1, files_per_part=1)
    assert calls == ["part-00002", "part-00003", "part-00004", "val"]  # done parts were not redone
    ref = json.loads((straight / "meta.json").read_text())
    assert {k: v for k, v in meta.items() if k != "plan"} == {k: v for k, v in ref.items() if k != "plan"}
    for split in ("train", "val"):
        assert np.array_equal(stream_tokens(resumed, split), stream_tokens(straight, split))


# ---- reading: order, resume, ranks --------------------------------------------------------------

def dm_on(path, tmp_path, seed=0, **kw):
    dm = TextDataModule(DataConfig(corpus=str(path), ood_corpus=None, cache_dir=str(tmp_path), **kw), seq_len=16,
                        batch_size=4, seed=seed, val_tokens=128)
    dm.setup("fit")
    return dm


def test_data_order_is_deterministic_and_the_loader_resumes_exactly(tmp_path, packed):
    a, b = dm_on(packed, tmp_path, seed=1), dm_on(packed, tmp_path, seed=1)
    la, lb = iter(a.train_dataloader()), iter(b.train_dataloader())
    first = [next(la) for _ in range(6)]
    assert all(torch.equal(p[0], q[0]) for p, q in zip(first, [next(lb) for _ in range(6)]))
    assert not torch.equal(first[0][0], next(iter(dm_on(packed, tmp_path, seed=2).train_dataloader()))[0])
    # a checkpointed loader (Lightning saves its state_dict) continues where it stopped
    loader = a.train_dataloader()
    it = iter(loader)
    seen = [next(it) for _ in range(3)]
    state = loader.state_dict()
    rest = [next(it)[0] for _ in range(3)]
    fresh = a.train_dataloader()
    fresh.load_state_dict(state)
    again = iter(fresh)
    assert all(torch.equal(r, next(again)[0]) for r in rest)
    assert torch.equal(seen[0][0], first[0][0])
    # validation: the dataset's own split, a fixed number of rows
    (vx, _), = [a._val["val"]]
    assert len(vx) == 128 // 16 and set(a.val_names) == {"val"}


def test_two_ranks_read_disjoint_samples_covering_the_split(packed):
    from litdata import StreamingDataset, TokensLoader
    from litdata.utilities.env import _DistributedEnv

    seen = []
    for rank in range(2):
        ds = StreamingDataset(str(packed / "train"), item_loader=TokensLoader(block_size=17), shuffle=True, seed=0)
        ds.distributed_env = _DistributedEnv(world_size=2, global_rank=rank, num_nodes=1)
        seen.append([bytes(np.asarray(x).astype(np.uint8).tolist()) for x in ds])
    n = len(StreamingDataset(str(packed / "train"), item_loader=TokensLoader(block_size=17)))
    assert seen[0] and seen[1] and set(seen[0]).isdisjoint(seen[1])
    assert len(seen[0]) + len(seen[1]) >= n - 2 * 17  # all of it, bar what drop_last leaves per rank
    assert abs(len(seen[0]) - len(seen[1])) <= 1


# ---- eval domains through the config ----------------------------------------------------------

def test_eval_domains_round_trip_through_resolve_and_config_hash(packed, tmp_path):
    from bench.run.config.matrix import expand, load_matrix

    (tmp_path / "m.yaml").write_text(f"name: m\nfixed:\n  data.eval: {{kjv2: kjv, plays: {packed}}}\n"
                                     "axes:\n  scale: [nano]\n")
    (cell,) = expand(load_matrix(str(tmp_path / "m.yaml")))
    a = cell.config
    b = resolve({"scale": "nano"}, {"data.eval": f"kjv2=kjv,plays={packed}"})
    c = resolve({"scale": "nano"}, {"data.eval": json.dumps({"kjv2": "kjv", "plays": str(packed)})})
    assert a.data.eval == b.data.eval == c.data.eval == {"kjv2": "kjv", "plays": str(packed)}
    assert a.config_hash() == b.config_hash() == c.config_hash() != resolve({"scale": "nano"}).config_hash()
    # where the data lives is not what is measured
    d = resolve({"scale": "nano"}, {"data.eval": f"kjv2=kjv,plays={packed}",
                                    "data.storage_options": "endpoint_url=http://x", "data.max_cache_size": "1GB"})
    assert d.config_hash() == a.config_hash() and d.data.storage_options == {"endpoint_url": "http://x"}
    with pytest.raises(ValueError, match="data.eval name 'val'"):
        resolve({"scale": "nano"}, {"data.eval": "val=kjv"})
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        resolve({"scale": "nano"}, {"data.eval": "kjv"})


# ---- the command line --------------------------------------------------------------------------

def test_loader_speed_is_compared_with_the_committed_gpu_record(packed, tmp_path, capsys):
    from bench import cli
    from bench.commands.data import GPU_RECORDS, gpu_tokens_per_sec

    records = [json.loads(p.read_text()) for p in GPU_RECORDS.glob("*/record.json")]
    best = max((r for r in records if r["status"] == "ok"), key=lambda r: r["metrics"]["tokens_per_sec"])
    tps, what = gpu_tokens_per_sec()
    assert tps == best["metrics"]["tokens_per_sec"] and best["id"] in what and "H100" in what
    assert cli.main(["data", "speed", str(packed), "--workers", "1", "--seq-len", "16", "--batch-size", "4",
                     "--batches", "5", "--warmup", "1", "--cache-dir", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["workers"] for r in out["loader"]] == [0, 1] and out["gpu_tokens_per_sec"] == tps
    assert all(r["tokens_per_sec"] > 0 and r["ratio_to_gpu"] == r["tokens_per_sec"] / tps for r in out["loader"])


def test_eval_domains_become_leaderboard_columns():
    from bench.results import render
    from bench.results.tables.leaderboard import cell_columns, cells_table

    def rec(i, ppl):
        return {"id": f"c{i}", "scale": "nano", "activation": "swiglu", "norm": "pre", "seed": i, "status": "ok",
                "params": {"total": 1, "non_embedding": 1}, "data": {"eval": ["val", "books", "wiki"]},
                "metrics": {"val_ppl": 3.0 + i, "val_loss": 1.0, "books_ppl": ppl, "wiki_ppl": 2 * ppl}}

    from bench.results.records import Record

    records = [Record.from_dict(rec(0, 5.0)), Record.from_dict(rec(1, 7.0))]
    cols = [c.name for c in cell_columns(records)]
    assert cols[cols.index("ood_ppl") + 1: cols.index("ood_ppl") + 3] == ["books_ppl", "wiki_ppl"]
    table = cells_table(records)
    assert [r["books_ppl"] for r in table.values()] == [5.0, 7.0]
    header, first, _ = render.csv(table).strip().splitlines()
    assert "books_ppl" in header.split(",") and "10.0" in first.split(",")
    plain = [Record.from_dict({**rec(0, 5.0), "data": {}})]
    assert [c.name for c in cell_columns(plain)] == [c.name for c in cell_columns([])]  # no domains: no columns


def test_a_stuck_writer_is_stopped_not_waited_for(tmp_path, monkeypatch):
    """Whatever makes litdata wait for good (a queue no one feeds), the supervision stops its process
    group once it has used no CPU for STALL_SECONDS, and says so."""
    from datamodules import chunks

    monkeypatch.setattr(chunks, "STALL_SECONDS", 2.0)
    monkeypatch.setattr(chunks, "_run_optimize", lambda *a: time.sleep(3600))
    t = time.monotonic()
    with pytest.raises(RuntimeError, match="no CPU for 2 s"):
        chunks._optimize([np.arange(10, dtype=np.uint16)], tmp_path / "data")
    assert time.monotonic() - t < 60
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".optimize-")]  # its scratch folder too
