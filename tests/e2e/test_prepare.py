"""`bench data prepare` and prepared corpora across processes: S3 through a real local S3 server (moto),
a cell and a preparation killed with SIGKILL, signals, full disks and a second prepare into one folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from corpus_files import paragraphs, stream_tokens
from datamodules import train_bpe
from datamodules.prepare import prepare

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1", "AWS_ACCESS_KEY_ID": "testing",
       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


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


def test_bad_prepared_input_is_one_line_and_nothing_trains(tmp_path, sources, packed, s3, bench_cli, one_line_error,
                                                           monkeypatch):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(k, ENV[k])
    out = tmp_path / "results"
    args = [*RUN, "--out", str(out), "--data.cache_dir", str(tmp_path / "c"), "--data.ood_corpus", "none"]
    s3opt = ["--data.storage_options", f"endpoint_url={s3}"]
    one_line_error(bench_cli("run", *args, "--data.corpus", "s3://no-such-bucket/ds", *s3opt),
                   "no prepared dataset at")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(bench_cli("run", *args, "--data.corpus", str(empty)), "no .txt", "bench data prepare")
    bare = tmp_path / "bare"  # litdata's files without the metadata of `bench data prepare`
    bare.mkdir()
    (bare / "index.json").write_text((packed / "train" / "index.json").read_text())
    one_line_error(bench_cli("run", *args, "--data.corpus", str(bare)), "without the meta.json")
    tok = tmp_path / "tok.json"
    train_bpe(paragraphs(50), 300).save(tok)
    one_line_error(bench_cli("run", *args, "--data.corpus", str(packed), "--data.tokenizer", str(tok)),
                   "was prepared with tokenizer bytes", "use --data.tokenizer dataset")
    broken = tmp_path / "noval"
    prepare(str(sources[0] / "b.jsonl"), "bytes", broken, val_fraction=0.1)
    import shutil
    shutil.rmtree(broken / "val")
    one_line_error(bench_cli("run", *args, "--data.corpus", str(broken)), "has no 'val' split")
    small = tmp_path / "small"
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "x.jsonl").write_text("".join(json.dumps({"text": f"d{i} w w"}) + "\n" for i in range(60)))
    meta = prepare(str(tmp_path / "one"), "bytes", small, val_fraction=0.05)
    assert 0 < meta["splits"]["val"]["tokens"] < 65
    one_line_error(bench_cli("run", *args, "--data.corpus", str(small)), "fewer than one row")
    assert not out.exists()  # nothing trained, nothing written


@pytest.mark.slow
def test_a_cell_on_a_prepared_dataset_resumes_exactly_after_kill_9(tmp_path, packed, bench_cli):
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
    assert bench_cli("run", *args, "--out", str(killed)).returncode == 0
    straight = tmp_path / "straight"
    assert bench_cli("run", *args, "--out", str(straight)).returncode == 0
    (resumed, rec), (ref, ref_rec) = losses(killed), losses(straight)
    assert rec["resumed_from_step"] >= 5 and sorted(resumed) == list(range(20))
    assert resumed == ref and rec["metrics"]["val_loss"] == ref_rec["metrics"]["val_loss"]


@pytest.mark.slow
def test_bench_data_prepare_killed_with_sigkill_resumes(tmp_path, bench_cli):
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
    assert bench_cli(*cmd, "--out", str(out)).returncode == 0
    ref = tmp_path / "ref"
    prepare(str(src), "bytes", ref, val_fraction=0.1, files_per_part=1)
    a, b = json.loads((out / "meta.json").read_text()), json.loads((ref / "meta.json").read_text())
    assert a["splits"] == b["splits"] and a["fingerprint"] == b["fingerprint"]
    for split in ("train", "val"):
        assert np.array_equal(stream_tokens(out, split), stream_tokens(ref, split))


# ---- never hangs, never lies: a full disk, a signal, a second prepare ---------------------------

def big_source(folder: Path, files: int = 4, docs: int = 1500) -> Path:
    """About 0.2 KB of real text per document (0.3 MB per file of 1500): parts take a moment, chunks
    fill a small disk."""
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
def test_a_full_disk_is_one_line_leaves_no_orphan_and_resumes_once_space_is_freed(tmp_path, workers, bench_cli):
    """On a real small filesystem: the run stops (it once waited on a litdata queue for good) with
    one line and exit 2, no litdata process left, nothing that reads as complete; freed space, the
    same command resumes to the same dataset as a run that had room."""
    src = big_source(tmp_path / "src", files=2, docs=3000)  # 2.2 MB of chunks for a 1 MB disk, in 2 parts
    disk = tmp_path / "disk"
    tmpfs(disk, "1M")
    try:
        cmd = ["data", "prepare", str(src), "--val-fraction", "0.05", "--files-per-part", "1", "--workers",
               str(workers), "--quiet"]
        r = bench_cli(*cmd, "--out", str(disk / "ds"), subprocess=True, env=ENV)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and "disk full" in lines[0], r.stderr[-3000:]
        assert "rerun the same command to resume" in lines[0]
        no_leftovers(str(disk))
        assert not (disk / "ds" / "meta.json").exists()
        subprocess.run(["mount", "-o", "remount,size=64M", str(disk)], check=True)
        again = bench_cli(*cmd, "--out", str(disk / "ds"), subprocess=True, env=ENV)
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
def test_a_signal_stops_prepare_saying_rerun_with_no_meta_and_no_orphan(tmp_path, sig, code, bench_cli):
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
    assert bench_cli("data", "prepare", str(src), "--out", str(out), "--val-fraction", "0.05", "--files-per-part", "1",
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
