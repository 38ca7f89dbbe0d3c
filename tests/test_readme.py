"""The README and docs/performance.md say only what is true today.

Every command in their ```bash blocks runs: as written, or scaled down as the table below says. A
command this file neither runs nor lists fails the coverage test, so a new example cannot land
untested. The commands run in one temporary folder that stands in for a clone (it links the
repository's examples/, configs/ and committed results, and is $HOME for `~/` paths), sharing one
results/ and one .cache/. Each command line is expanded by bash (tildes, quoting) and then run
through `bench`'s entry point, bench.cli.main, in one Python process: a process per command would
cost ~4 s of imports each.

Their figures: a shown output must still be what its command prints; every figure (a number with a
unit) carries the date it was measured; a table row that names a committed record shows that
record's numbers. The README stays short, its Layout matches bench/, and every repository path the
docs name exists.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# Appended to every training command: 2 optimizer steps, one small validation, no probes, no OOD split.
FAST = ("--train.max_steps 2 --train.val_every 2 --train.val_tokens 1024 --train.warmup_steps 0 "
        "--train.log_every 1 --train.throughput_warmup 0 --train.probe_every 0 --data.ood_corpus none --quiet")

AS_WRITTEN = {
    "bench plan --scale polycom-1b --activation swiglu,polynorm,powlu --norm pre --json",
    "bench table results/ladder-example --ladder --predict 1e6 --format md",
    "bench table default --format md",
    "bench report results/default",
    "bench ladder --scale micro --activation swiglu,polynorm --norm pre --seed 0,1 --params 2e4:1e6 --dry-run",
    "bench run zoo --scale gpas-71m --slurm --partition gpu --time 240 --train.accelerator gpu --dry-run",
    "bench status zoo --scale nano",
    "bench plan examples/plugin/matrix.yaml",
}

# command -> (what runs instead, in order; why). A training command keeps its own flags and is cut to 2
# steps (FAST) and fewer cells; the docs' numbers (steps, seeds) are what a real study uses.
SUBSTITUTE = {
    "bench run --scale nano --activation swiglu,powlu --norm pre,pre+gpas,deepnorm+gpas --seed 0,1,2": (
        [f"bench run --scale nano --activation swiglu,powlu --norm pre,pre+gpas,deepnorm+gpas --seed 0,1 {FAST} "
         "--train.max_steps 4 --train.val_every 2"], "two seeds of three, 4 steps validated every 2"),
    "bench run zoo --scale nano --train.max_steps 50": (
        [f"bench run zoo --scale nano --activation swiglu,relu2 --norm pre,sandwich {FAST}"],
        "zoo is every activation x every scheme: 2 of each, 2 steps"),
    "bench run --recipe gpas --model.gpas_act tanh --train.lr 2e-3": (
        [f"bench run --recipe gpas --model.gpas_act tanh --train.lr 2e-3 --scale nano --activation swiglu "
         f"--norm pre+gpas {FAST}"], "one nano cell of the default matrix, 2 steps"),
    "bench table default --at seconds=60": (
        ["bench table default --at seconds"], "4-step cells never reach 60 s: the axis alone takes the largest "
                                              "budget every cell reached"),
    "bench sweep --scale nano --activation swiglu,gelu --norm pre --seed 0": (
        [f"bench sweep --scale nano --activation swiglu --norm pre --seed 0 --lr-points 2 {FAST}"],
        "2 LRs of one activation, 2 steps"),
    "bench run zoo --scale nano --workers 2": (
        [f"bench run zoo --scale nano --workers 2 --activation swiglu,relu2 --norm pre {FAST}"],
        "2 cells of zoo, 2 steps"),
    "bench data prepare ~/c4/en/ --tokenizer bytes --out ~/datasets/c4-bytes --workers 8": (
        ["bench data prepare ~/c4/en/ --tokenizer bytes --out ~/datasets/c4-bytes --workers 2"],
        "~/c4/en/ is a 2000-document stand-in the test writes; 2 processes"),
    "bench run --scale micro --data.corpus ~/datasets/c4-bytes --data.tokenizer dataset": (
        [f"bench run --scale nano --activation swiglu --norm pre --data.corpus ~/datasets/c4-bytes "
         f"--data.tokenizer dataset {FAST}"], "one nano cell, 2 steps"),
    "bench run nano-precision --save-weights": (
        [f"bench run nano-precision --save-weights --activation swiglu {FAST}"], "one activation, 2 steps"),
    "bench run --scale micro-moe --norm pre --model.ffn moe,dense": (
        [f"bench run --scale nano-moe --activation swiglu --norm pre --model.ffn moe,dense {FAST}"],
        "nano, one activation, 2 steps"),
    "bench run examples/plugin/matrix.yaml && bench report results/plugin-example": (
        [f"bench run examples/plugin/matrix.yaml --scale nano --norm pre,rezero_pre {FAST} "
         "&& bench report results/plugin-example"], "nano, 2 of its 3 schemes, 2 steps"),
    # docs/performance.md
    "bench overhead --steps 50 --repeats 12 --threads 1": (
        ["bench overhead --scale nano --steps 3 --repeats 2 --threads 1 --train.throughput_warmup 1"],
        "nano, 2 pairs of 3 steps"),
    "bench overhead --steps 50 --repeats 48 --train.compile true --threads 1": (
        ["bench overhead --scale nano --steps 3 --repeats 2 --train.compile false --threads 1 "
         "--train.throughput_warmup 1"], "nano, 2 pairs of 3 steps, eager: tests/test_overhead.py compiles pairs"),
    "bench overhead --steps 50 --repeats 32 --train.compile true": (
        ["bench overhead --scale nano --steps 3 --repeats 1 --train.compile false --train.throughput_warmup 1"],
        "nano, 1 pair of 3 steps, eager"),
    "bench overhead --scale nano --steps 400 --repeats 4 --train.compile true": (
        ["bench overhead --scale nano --steps 3 --repeats 1 --train.compile false --train.throughput_warmup 1 --json"],
        "1 pair of 3 steps, eager"),
}

SKIP = {
    "./install.sh && .venv/bin/bench run": "installs packages and trains the full default matrix (~7 min); "
                                           "the wheel test installs, the runs above train the default matrix",
    ".venv/bin/python -m pytest": "the test suite itself",
    # docs/performance.md
    "scripts/device-wheels.sh": "downloads wheels; tests/test_device_check.py covers the device check",
    "scripts/device-check.sh RESULTS_DIR": "needs a GPU; tests/test_device_check.py runs its --dry-run",
}

# What a command's output must show (the docs' comments say it).
EXPECT = {
    "bench plan --scale polycom-1b --activation swiglu,polynorm,powlu --norm pre --json":
        lambda plan: [c["intermediate_size"] for c in plan["cells"]] == [5504, 8256, 5504],
}

PERFORMANCE = ROOT / "docs" / "performance.md"
DOCS = (README, PERFORMANCE)  # the files whose commands run and whose figures are checked
MAX_README_LINES = 260


def readme_commands(text: str) -> list[str]:
    """Every command line of every ```bash block: continuations joined, comments dropped."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line)  # a comment: '#' at the start or after a space
            line = " ".join(line.split())
            if line:
                commands.append(line)
    return commands


def docs_commands() -> list[str]:
    return [c for doc in DOCS for c in readme_commands(doc.read_text())]


def shown_outputs(text: str) -> dict[str, list[str]]:
    """A ```text block after a ```bash block (prose between them allowed): the output of the bash
    block's last command, or part of it; command -> the block's non-empty lines."""
    shown = {}
    line = r"(?!```)[^\n]*\n"  # a line that is not a fence
    pattern = rf"^```bash\n((?:{line})*)```\n(?:{line})*?```text\n((?:{line})*)```"
    for bash, out in re.findall(pattern, text, flags=re.M):
        shown[readme_commands(f"```bash\n{bash}```\n")[-1]] = [ln for ln in out.splitlines() if ln.strip()]
    return shown


def test_every_readme_command_is_run_or_listed():
    commands = docs_commands()
    assert len(commands) > 20, "the docs' command blocks were not found"
    listed = AS_WRITTEN | set(SUBSTITUTE) | set(SKIP)
    missing = [c for c in commands if c not in listed]
    assert not missing, "README or docs/performance.md commands this test neither runs nor lists (add them to " \
                        f"AS_WRITTEN, SUBSTITUTE or SKIP in tests/test_readme.py): {missing}"
    stale = sorted(listed - set(commands))
    assert not stale, f"entries for commands the docs no longer have: {stale}"
    assert not (AS_WRITTEN & set(SUBSTITUTE)) and not (AS_WRITTEN & set(SKIP)) and not (set(SUBSTITUTE) & set(SKIP))
    shown = set(shown_outputs(README.read_text()))
    assert shown and shown <= AS_WRITTEN, "a shown output must come from a command run as written"


def test_readme_parser_reads_continuations_and_comments():
    text = "x\n```bash\n# a note\nbench run a \\\n  --b c   # why\n\nbench table\n```\n```yaml\nk: v\n```\n"
    assert readme_commands(text) == ["bench run a --b c", "bench table"]
    assert shown_outputs(text) == {}  # a yaml block, not a text block, follows
    text = "```bash\nbench list\nbench table\n```\n\nIt printed:\n\n```text\n| a | 1 |\n\n| b | 2 |\n```\n"
    assert shown_outputs(text) == {"bench table": ["| a | 1 |", "| b | 2 |"]}


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines: move detail to docs/ (at most {MAX_README_LINES})"


# A figure: a number with a unit of time, speed or share. '95% CI' and the like name a confidence
# level, and a datasheet peak ('989.4 TFLOP/s dense') a specification: neither is a measurement.
FIGURE = re.compile(r"(?<![\w.-])\d[\d,]*(?:\.\d+)?k?\s?(?:tokens/s|tok/s|TFLOP/s|min\b|ms\b|s\b|%)"
                    r"(?!\s?(?:CIs?|confidence|intervals?|percentile|dense)\b)")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")


def undated_figures(text: str) -> list[str]:
    """Paragraphs, list items and table rows that hold a figure but no date, in neither themselves nor
    an enclosing section header. Code blocks count as text (a comment can quote a figure), but a '#'
    inside one is not a header."""
    headers: list[tuple[int, str]] = []  # the enclosing headers: (level, text)
    undated, unit, fenced = [], [], False

    def close():
        body = " ".join(unit)
        if FIGURE.search(body) and not DATE.search(body) and not any(DATE.search(h) for _, h in headers):
            undated.append(body)
        unit.clear()

    for line in text.splitlines():
        if line.startswith("```"):
            close()
            fenced = not fenced
            continue
        header = None if fenced else re.match(r"(#+)\s+(.*)", line)
        if header:
            close()
            level = len(header.group(1))
            headers[:] = [h for h in headers if h[0] < level] + [(level, header.group(2))]
        elif not line.strip() or fenced or line.lstrip().startswith(("|", "- ", "* ")):
            close()  # a blank line, a code line, a table row or a list item starts a new unit
            if line.strip():
                unit.append(line)
        else:
            unit.append(line)
    close()
    return undated


def test_every_figure_carries_its_date():
    for doc in DOCS:
        undated = undated_figures(doc.read_text())
        assert not undated, f"{doc.name}: figures without the date they were measured (on the line or in its " \
                            "section header):\n" + "\n".join(undated)


def test_the_date_check_finds_undated_figures():
    # lines of the README before it moved its figures to docs/performance.md
    old = ("## Performance\n\nMeasured on this project's CPU machine (2 cores, torch 2.13.0+cpu).\n\n"
           "**Against litgpt** litgpt's compiled pretraining loop reaches about 19k tokens/s here. The\n"
           "harness reaches 19.6-21.7k\ntokens/s (the `micro-swiglu-pre` cell).\n\n"
           "| loop | tokens/s |\n|---|---|\n| bare PyTorch | 23,781 |\n\n"
           "- bundled corpus: about 7 minutes on 2 cores (6 min 59 s on a fresh clone)\n"
           "```bash\nbench overhead   # 5 min on 2 cores\n```\n")
    undated = undated_figures(old)
    assert [u[:20] for u in undated] == ["**Against litgpt** l", "- bundled corpus: ab", "bench overhead   # 5"]
    assert not undated_figures(old.replace("## Performance", "## Performance, measured 2026-11-29"))
    assert not undated_figures("Means carry a 95% CI and 90% intervals over 3 seeds; H100: 989.4 TFLOP/s dense.\n")
    assert undated_figures("### Costs\n\nswiglu 22.1k tok/s, 12% MFU\n") == ["swiglu 22.1k tok/s, 12% MFU"]
    assert not undated_figures("## Costs, 2026-12-06\n\n### CPU\n\nswiglu 22.1k tok/s\n")


# A table row that names a committed record (`results/.../<cell id>`) shows that record's numbers, as
# these columns format them.
RECORD_COLUMNS = {
    "tokens/s": lambda r: f"{r['metrics']['tokens_per_sec']:,.0f}",
    "MFU": lambda r: f"{100 * r['metrics']['mfu']:.1f}%",
    "peak memory": lambda r: f"{r['metrics']['peak_memory_bytes'] / 2**30:.1f} GiB",
    "wall time": lambda r: f"{r['wall_seconds']:.0f} s",
    "started": lambda r: r["started"][:10],
}


def record_rows(text: str) -> list[tuple[str, dict[str, str]]]:
    """(record folder, {column header: cell}) for each table row whose first cell names a record."""
    rows, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(line) <= set("|-: "):
            path = re.search(r"`(results/[^`]+)`", cells[0])
            if path:
                rows.append((path.group(1), dict(zip(header, cells))))
    return rows


def record_mismatches(text: str) -> list[str]:
    wrong = []
    for folder, row in record_rows(text):
        record = json.loads((ROOT / folder / "record.json").read_text())
        for column, cell in row.items():
            if column in RECORD_COLUMNS and cell.strip("*") != RECORD_COLUMNS[column](record):
                wrong.append(f"{folder}: {column} {cell!r}, the record says {RECORD_COLUMNS[column](record)!r}")
    return wrong


def test_figures_from_records_match_the_records():
    text = PERFORMANCE.read_text()
    rows = record_rows(text)
    assert len(rows) >= 7, "docs/performance.md's tables of committed records (GPU and CPU) were not found"
    assert {c for _, row in rows for c in row} >= {"tokens/s", "MFU", "peak memory", "wall time"}
    assert not record_mismatches(text)
    folder, row = rows[0]
    tampered = text.replace(f"| {row['tokens/s']} |", "| 1,234 |", 1)
    assert record_mismatches(tampered) == [f"{folder}: tokens/s '1,234', the record says {row['tokens/s']!r}"]


def layout_dirs(text: str) -> set[str]:
    """The folders the README's Layout block names, their paths rebuilt from the indentation."""
    block = re.search(r"^## Layout\n\n```\n(.*?)^```", text, flags=re.M | re.S).group(1)
    dirs, stack = set(), []
    for line in block.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.endswith("/"):
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        stack[depth:] = [name.rstrip("/")]
        dirs.add("/".join(stack))
    return dirs


def test_readme_layout_matches_the_tree():
    named = layout_dirs(README.read_text())
    package = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "bench").rglob("*")
               if p.is_file() and p.suffix in (".py", ".j2") and "__pycache__" not in p.parts}
    assert package - named == set(), "folders of bench/ the Layout section does not name"
    assert {d for d in named if not (ROOT / d).is_dir()} == set(), "folders the Layout section names that do not exist"


# A path the README or docs/*.md name outside code blocks, under one of the repository's folders.
PATH = re.compile(r"(?<![\w./~-])((?:bench|models|datamodules|scripts|configs|tests|benchmarks|docs|examples)"
                  r"/[\w./-]*\w/?)")


def cited_paths(text: str) -> list[str]:
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return [p for p in PATH.findall(prose) if "*" not in p]


def test_every_path_the_docs_name_exists():
    missing = []
    for doc in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        base = ROOT if doc == README else doc.parent
        for path in cited_paths(doc.read_text()):
            if not (ROOT / path).exists() and not (base / path).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert not missing, "paths the docs name that do not exist (moved or renamed?):\n" + "\n".join(missing)
    assert cited_paths("see `bench/run/tools/check.py` and bench/results/stats/\n```\nbench/x.py\n```\n") == [
        "bench/run/tools/check.py", "bench/results/stats/"]


PROGRAM = re.compile(r"^(bench|\.venv/bin/bench|python -m bench\.cli)\s+")

# Run by the driver process: each step is a list of argv (a `&&` chain), run in order through bench.cli.main.
DRIVER = r"""
import json, sys
from bench.cli import main

steps, codes = json.load(open(sys.argv[1])), []
for n, chain in enumerate(steps):
    code = 0
    for argv in chain:
        print(f"\n=== STEP {n}: bench {' '.join(argv)}", flush=True)
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's errors and --help
            code = e.code if isinstance(e.code, int) else 1
        sys.stdout.flush(); sys.stderr.flush()
        if code:
            break
    codes.append(code)
json.dump(codes, open(sys.argv[2], "w"))
"""


def shell_words(command: str, home: Path) -> list[str]:
    """The words bash makes of a command (tilde expansion with HOME=home, quotes removed)."""
    r = subprocess.run(["bash", "-c", f"printf '%s\\0' {command}"], capture_output=True, text=True, check=True,
                       env={**os.environ, "HOME": str(home)})
    return r.stdout.split("\0")[:-1]


def argv_chain(command: str, home: Path) -> list[list[str]]:
    chain = []
    for part in command.split(" && "):
        assert PROGRAM.match(part), f"not a bench command: {part!r}"
        chain.append(shell_words(PROGRAM.sub("", part), home))
    return chain


def write_corpus(folder: Path, n_docs: int = 2000) -> None:
    """A stand-in for ~/c4/en/: documents of random words, one JSON line each."""
    rng = random.Random(0)
    words = "the of and to in a is that for it as was with be by on not he this are or his".split()
    folder.mkdir(parents=True)
    with open(folder / "part-0.jsonl", "w") as f:
        for _ in range(n_docs):
            f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(40))}) + "\n")


@pytest.mark.slow  # ~60 s: every example at 2 steps, one process; see the module docstring
def test_readme_commands_run(tmp_path):
    home = tmp_path
    for name in ("examples", "configs"):
        (home / name).symlink_to(ROOT / name)
    (home / "results").mkdir()
    (home / "results" / "ladder-example").symlink_to(ROOT / "results" / "ladder-example")  # read, never written
    write_corpus(home / "c4" / "en")
    runs = []  # (the docs' command, the commands run for it)
    for command in docs_commands():
        if command in AS_WRITTEN:
            runs.append((command, [command]))
        elif command in SUBSTITUTE:
            runs.append((command, SUBSTITUTE[command][0]))
    steps = [argv_chain(c, home) for _, cmds in runs for c in cmds]
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    env = {**os.environ, "HOME": str(home), "LITDATA_DISABLE_VERSION_CHECK": "1", "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-c", DRIVER, "steps.json", "codes.json"], cwd=home, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert (tmp_path / "codes.json").exists(), r.stdout[-5000:]
    codes = json.loads((tmp_path / "codes.json").read_text())
    outputs = dict(re.findall(r"=== STEP (\d+): [^\n]*\n(.*?)(?=\n=== STEP |\Z)", r.stdout, flags=re.S))
    failed = [(" ".join(" ".join(a) for a in steps[i]), codes[i], outputs.get(str(i), "")[-1500:])
              for i in range(len(steps)) if codes[i] != 0]
    assert not failed, "README or docs/performance.md commands that failed:\n" + "\n\n".join(
        f"$ bench {c}\nexit {code}\n{out}" for c, code, out in failed)
    shown = shown_outputs(README.read_text())
    i = 0
    for command, cmds in runs:
        for _ in cmds:
            out = outputs[str(i)]
            check = EXPECT.get(command)
            if check:
                assert check(json.JSONDecoder().raw_decode(out[out.index("{"):])[0]), (command, out[-2000:])
            if command in shown:  # the README shows these lines as its output: they must still be printed
                printed = {line.strip() for line in out.splitlines()}
                gone = [line for line in shown[command] if line.strip() not in printed]
                assert not gone, f"{command}: the README shows lines it no longer prints: {gone}\n{out[-3000:]}"
            i += 1
