"""`bench data prepare` and prepared corpora: formats, metadata, split, truncation, resume, DDP
partition, S3 through a real local S3 server (moto), eval domains, and bad input."""

from __future__ import annotations

import gzip
import signal
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import datamodules.prepare as prep
from bench.run.config.schema import DataConfig
from bench.run.config.presets import resolve
from datamodules import IGNORE, CorpusError, PreparedCorpus, TextDataModule, load_corpus, train_bpe
from datamodules.prepare import prepare

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1", "AWS_ACCESS_KEY_ID": "testing",
       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def paragraphs(n_docs: int, offset: int = 0) -> list[str]:
    """Real text: paragraphs of the bundled plays."""
    texts = [p for d in load_corpus("bundled")[:6] for p in d.text.split("\n\n") if len(p) > 40]
    return texts[offset: offset + n_docs]


def write_sources(folder: Path) -> list[str]:
    """Every input format once; returns the documents in file order."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    folder.mkdir(parents=True, exist_ok=True)
    docs = paragraphs(200)
    (folder / "a.txt").write_text(docs[0])
    (folder / "b.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs[1:50]) + "\n")
    with gzip.open(folder / "c.json.gz", "wt") as f:
        f.write("".join(json.dumps({"text": t, "url": "x"}) + "\n" for t in docs[50:100]))
    (folder / "d.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(
        "".join(json.dumps({"text": t}) + "\n" for t in docs[100:150]).encode()))
    sub = folder / "sub"
    sub.mkdir(exist_ok=True)
    pq.write_table(pa.table({"text": docs[150:200]}), sub / "e.parquet", row_group_size=16)
    (sub / "notes.md").write_text("not a source")
    return docs


def stream_tokens(path: Path, split: str) -> np.ndarray:
    """Every token of a split, in stored order (block_size 1: no tail dropped)."""
    from litdata import StreamingDataset, TokensLoader

    ds = StreamingDataset(str(path / split), item_loader=TokensLoader(block_size=1))
    return np.concatenate([ds[i] for i in range(len(ds))]) if len(ds) else np.zeros(0)


def documents(tokens: np.ndarray) -> list[bytes]:
    """Split a bytes-tokenizer stream at EOS (0)."""
    return [bytes(part.astype(np.uint8).tolist()) for part in np.split(tokens, np.flatnonzero(tokens == 0))[:-1]
            for part in [part[part != 0]]]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("src")
    return folder, write_sources(folder)


@pytest.fixture(scope="module")
def packed(tmp_path_factory, sources):
    out = tmp_path_factory.mktemp("packed") / "ds"
    prepare(str(sources[0]), "bytes", out, workers=2, val_fraction=0.1)
    return out


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


# ---- the command line and S3 -------------------------------------------------------------------

def bench(*args, env=None):
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env or ENV)


@pytest.fixture(scope="module")
def s3():
    """A real S3-compatible server (moto's standalone server) on a free local port."""
    pytest.importorskip("moto", reason="moto[server] is in the dev extra")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, "moto server exited"
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def upload(url: str, folder: Path, bucket: str, prefix: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    for f in folder.rglob("*"):
        if f.is_file():
            client.upload_file(str(f), bucket, f"{prefix}/{f.relative_to(folder).as_posix()}")


RUN = ["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--train.max_steps", "6", "--train.val_every",
       "3", "--train.val_tokens", "256", "--ckpt-every", "0", "--quiet", "--train.probe_every", "0"]


@pytest.mark.slow
def test_bench_run_streams_from_s3_with_the_records_of_the_local_folder(tmp_path, sources, s3, monkeypatch, capsys):
    from bench import cli

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(k, ENV[k])
    ds = tmp_path / "ds"
    assert cli.main(["data", "prepare", str(sources[0]), "--out", str(ds), "--workers", "2", "--val-fraction",
                     "0.1"]) == 0
    assert "wrote" in capsys.readouterr().out and (ds / "meta.json").exists()
    upload(s3, ds, "corpora", "plays/v1")
    other = tmp_path / "other.jsonl"  # a second domain: text the training split never saw
    other.write_text("".join(json.dumps({"text": t}) + "\n" for t in paragraphs(30, offset=400)))
    common = [*RUN, "--data.tokenizer", "dataset", "--data.eval", f"bible={other}", "--data.ood_corpus", "none",
              "--data.cache_dir", str(tmp_path / "c")]
    assert cli.main(["run", *common, "--data.corpus", str(ds), "--out", str(tmp_path / "local")]) == 0
    assert cli.main(["run", *common, "--data.corpus", "s3://corpora/plays/v1", "--data.storage_options",
                     f"endpoint_url={s3}", "--data.max_cache_size", "1GB", "--out", str(tmp_path / "remote")]) == 0
    (lp,), (rp,) = (list((tmp_path / k).glob("default/*/record.json")) for k in ("local", "remote"))
    lrec, rrec = json.loads(lp.read_text()), json.loads(rp.read_text())
    assert lrec["status"] == rrec["status"] == "ok"
    for key in ("train_loss", "val_loss", "val_ppl", "bible_loss", "bible_ppl"):
        assert lrec["metrics"][key] == rrec["metrics"][key], key
    assert lrec["data"]["corpus_fingerprint"] == rrec["data"]["corpus_fingerprint"]
    assert lrec["data"]["eval"] == ["val", "bible"]
    assert list((tmp_path / "c" / "streams").glob("*/train/**/p0*.bin"))  # chunks came through the local cache
    board = (tmp_path / "remote" / "default" / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert "bible_ppl" in board


def one_line_error(capsys, argv, *needles):
    from bench import cli

    code, err = cli.main(["run", *argv]), capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err, err
    assert err.count("\n") == 0 and all(n in err for n in needles), err


def test_bad_prepared_input_is_one_line_and_nothing_trains(tmp_path, sources, packed, s3, capsys, monkeypatch):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(k, ENV[k])
    out = tmp_path / "results"
    args = [*RUN, "--out", str(out), "--data.cache_dir", str(tmp_path / "c"), "--data.ood_corpus", "none"]
    s3opt = ["--data.storage_options", f"endpoint_url={s3}"]
    one_line_error(capsys, [*args, "--data.corpus", "s3://no-such-bucket/ds", *s3opt], "no prepared dataset at")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(capsys, [*args, "--data.corpus", str(empty)], "no .txt", "bench data prepare")
    bare = tmp_path / "bare"  # litdata's files without the metadata of `bench data prepare`
    bare.mkdir()
    (bare / "index.json").write_text((packed / "train" / "index.json").read_text())
    one_line_error(capsys, [*args, "--data.corpus", str(bare)], "without the meta.json")
    tok = tmp_path / "tok.json"
    train_bpe(paragraphs(50), 300).save(tok)
    one_line_error(capsys, [*args, "--data.corpus", str(packed), "--data.tokenizer", str(tok)],
                   "was prepared with tokenizer bytes", "use --data.tokenizer dataset")
    broken = tmp_path / "noval"
    prepare(str(sources[0] / "b.jsonl"), "bytes", broken, val_fraction=0.1)
    import shutil
    shutil.rmtree(broken / "val")
    one_line_error(capsys, [*args, "--data.corpus", str(broken)], "has no 'val' split")
    small = tmp_path / "small"
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "x.jsonl").write_text("".join(json.dumps({"text": f"d{i} w w"}) + "\n" for i in range(60)))
    meta = prepare(str(tmp_path / "one"), "bytes", small, val_fraction=0.05)
    assert 0 < meta["splits"]["val"]["tokens"] < 65
    one_line_error(capsys, [*args, "--data.corpus", str(small)], "fewer than one row")
    assert not out.exists()  # nothing trained, nothing written


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


@pytest.mark.slow
def test_a_cell_on_a_prepared_dataset_resumes_exactly_after_kill_9(tmp_path, packed):
    import csv
    import signal

    args = [*RUN, "--train.max_steps", "20", "--train.val_every", "10", "--train.log_every", "1", "--ckpt-every",
            "5", "--data.corpus", str(packed), "--data.tokenizer", "dataset", "--data.ood_corpus", "none",
            "--data.cache_dir", str(tmp_path / "c")]

    def losses(out):
        (path,) = out.glob("default/*/record.json")
        with open(path.parent / "metrics.csv") as f:
            curve = {int(r["step"]): r["train/loss"] for r in csv.DictReader(f) if r.get("train/loss")}
        return curve, json.loads(path.read_text())

    killed = tmp_path / "killed"
    # held mid-validation at step 10 (bench/faults.py), after the step-5 checkpoint: a kill there is
    # a kill during training whatever the machine's speed
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", *args, "--out", str(killed)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**ENV, "BENCH_PAUSE_AT": "validation"})
    assert any("PAUSED AT validation" in line for line in proc.stderr), "the run ended before validating"
    assert list(killed.glob("default/*/checkpoints/latest.ckpt"))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert bench("run", *args, "--out", str(killed)).returncode == 0
    straight = tmp_path / "straight"
    assert bench("run", *args, "--out", str(straight)).returncode == 0
    (resumed, rec), (ref, ref_rec) = losses(killed), losses(straight)
    assert rec["resumed_from_step"] >= 5 and sorted(resumed) == list(range(20))
    assert resumed == ref and rec["metrics"]["val_loss"] == ref_rec["metrics"]["val_loss"]


@pytest.mark.slow
def test_bench_data_prepare_killed_with_sigkill_resumes(tmp_path):
    import signal

    src = tmp_path / "src"
    src.mkdir()
    texts = paragraphs(400)
    for f in range(5):  # ~0.5 MB per file: each part takes a moment
        (src / f"f{f}.jsonl").write_text("".join(json.dumps({"text": t * 8}) + "\n" for t in texts[f::5]))
    cmd = ["data", "prepare", str(src), "--val-fraction", "0.1", "--files-per-part", "1", "--quiet"]
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *cmd, "--out", str(out)], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / ".work" / "part-00001.json").exists() and time.time() < deadline:
        assert proc.poll() is None, "prepare ended before its second part"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if (out / "meta.json").exists():
        pytest.skip("the preparation finished before the kill landed (machine too fast for this corpus)")
    done = sorted(p.name for p in (out / ".work").glob("part-*.json"))
    assert "part-00000.json" in done and "part-00004.json" not in done
    assert bench(*cmd, "--out", str(out)).returncode == 0
    ref = tmp_path / "ref"
    prepare(str(src), "bytes", ref, val_fraction=0.1, files_per_part=1)
    a, b = json.loads((out / "meta.json").read_text()), json.loads((ref / "meta.json").read_text())
    assert a["splits"] == b["splits"] and a["fingerprint"] == b["fingerprint"]
    for split in ("train", "val"):
        assert np.array_equal(stream_tokens(out, split), stream_tokens(ref, split))


# ---- never hangs, never lies: a full disk, a signal, a second prepare ---------------------------

def big_source(folder: Path, files: int = 4, docs: int = 1500) -> Path:
    """About 1.5 MB of real text per file: parts take a moment, chunks fill a small disk."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = paragraphs(300)
    for f in range(files):
        with open(folder / f"f{f}.jsonl", "w") as fh:
            for i in range(docs):
                fh.write(json.dumps({"text": f"{f}-{i} " + texts[(f * docs + i) % len(texts)]}) + "\n")
    return folder


def leftovers(marker: str) -> list[str]:
    """Processes still running whose command line names ``marker`` (a test's own folder)."""
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd:
                found.append(f"{p.name}: {cmd}")
    return found


def no_leftovers(marker: str) -> None:
    deadline = time.time() + 10
    while leftovers(marker) and time.time() < deadline:
        time.sleep(0.2)
    assert not leftovers(marker)


def tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.decode().strip()}")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_full_disk_is_one_line_leaves_no_orphan_and_resumes_once_space_is_freed(tmp_path, workers):
    """On a real small filesystem: the run stops (it once waited on a litdata queue for good) with
    one line and exit 2, no litdata process left, nothing that reads as complete; freed space, the
    same command resumes to the same dataset as a run that had room."""
    src = big_source(tmp_path / "src")
    disk = tmp_path / "disk"
    tmpfs(disk, "1M")
    try:
        cmd = ["data", "prepare", str(src), "--val-fraction", "0.05", "--files-per-part", "1", "--workers",
               str(workers), "--quiet"]
        r = bench(*cmd, "--out", str(disk / "ds"))
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and "disk full" in lines[0], r.stderr[-3000:]
        assert "rerun the same command to resume" in lines[0]
        no_leftovers(str(disk))
        assert not (disk / "ds" / "meta.json").exists()
        subprocess.run(["mount", "-o", "remount,size=64M", str(disk)], check=True)
        again = bench(*cmd, "--out", str(disk / "ds"))
        assert again.returncode == 0, again.stderr[-3000:]
        ref = tmp_path / "ref"
        prepare(str(src), "bytes", ref, val_fraction=0.05, files_per_part=1, workers=workers)
        a, b = json.loads((disk / "ds" / "meta.json").read_text()), json.loads((ref / "meta.json").read_text())
        assert a["splits"] == b["splits"] and a["fingerprint"] == b["fingerprint"]
        for split in ("train", "val"):
            assert np.array_equal(np.sort(stream_tokens(disk / "ds", split)), np.sort(stream_tokens(ref, split)))
        assert sorted(p.name for p in (disk / "ds").iterdir()) == ["counts.npy", "meta.json", "train", "val"]
    finally:
        subprocess.run(["umount", "-l", str(disk)])


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_prepare_saying_rerun_with_no_meta_and_no_orphan(tmp_path, sig, code):
    """Ctrl-C once exited 0 with a half-written dataset (litdata's SIGINT handler): a script chaining
    `prepare && upload` uploaded half a dataset."""
    src = big_source(tmp_path / "src", files=6)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "data", "prepare", str(src), "--out", str(out),
                             "--val-fraction", "0.05", "--files-per-part", "1", "--workers", "2", "--quiet"],
                            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / ".work" / "part-00000.json").exists():  # into its second part, litdata's workers running
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.02)
    os.kill(proc.pid, sig)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "rerun the same command to resume" in lines[0] and "Traceback" not in err, err
    assert not (out / "meta.json").exists()
    no_leftovers(str(out))
    assert bench("data", "prepare", str(src), "--out", str(out), "--val-fraction", "0.05", "--files-per-part", "1",
                 "--workers", "2", "--quiet").returncode == 0
    assert (out / "meta.json").exists()


def test_a_second_prepare_into_one_folder_waits_for_the_first(tmp_path):
    """The second once died with a traceback while the first was writing. The first is this test holding
    the folder's prepare lock (as a running prepare does), so the second surely starts while it is held,
    however slowly it starts on a loaded machine."""
    from filelock import FileLock

    from datamodules.prepare import LOCK

    src = big_source(tmp_path / "src", files=4)
    out = tmp_path / "out"
    out.mkdir()
    first = FileLock(str(out / LOCK))
    first.acquire()
    try:
        second = subprocess.Popen([sys.executable, "-m", "bench.cli", "data", "prepare", str(src), "--out", str(out),
                                   "--val-fraction", "0.05", "--files-per-part", "1"], cwd=ROOT, env=ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        said = ""
        while "waiting for it" not in said and (line := second.stdout.readline()):
            said += line
        assert "waiting for it" in said and second.poll() is None, said
        assert not (out / "meta.json").exists()  # it waits: nothing written while the first holds the folder
    finally:
        first.release()
    rest, _ = second.communicate(timeout=600)
    assert second.returncode == 0 and "Traceback" not in rest, rest[-3000:]
    assert json.loads((out / "meta.json").read_text())["splits"]["train"]["documents"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["counts.npy", "meta.json", "train", "val"]


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
