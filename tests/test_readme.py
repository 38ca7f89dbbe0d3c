"""Every command in the README's ```bash blocks runs: as written, or scaled down as the table below says.

A README command this file neither runs nor lists fails the coverage test, so a new example cannot land
untested. The commands run in one temporary folder that stands in for a clone (it links the repository's
examples/ and configs/, and is $HOME for `~/` paths), sharing one results/ and one .cache/. Each command
line is expanded by bash (tildes, quoting) and then run through `bench`'s entry point, bench.cli.main, in
one Python process: a process per command would cost ~4 s of imports each, about 2 minutes in all.
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
    "bench table default --format md",
    "bench report results/default-lr",
    "bench ladder --scale micro --activation swiglu,polynorm --norm pre --seed 0,1 --params 2e4:1e6 --dry-run",
    "bench plan examples/plugin/matrix.yaml",
    "python -m bench.cli plan --scale polycom-moe --recipe polycom-moe --activation swiglu,polynorm --norm pre",
    "python -m bench.cli report results/default",
    "bench status zoo --scale gpas-71m --train.accelerator gpu",
    "bench table zoo",
    "bench plan zoo --scale gpas-71m --gpu h100-80gb",
}

# README command -> (what runs instead, in order; why). A training command keeps its own flags and is cut
# to 2 steps (FAST) and fewer cells; the README's numbers (steps, seeds) are what a real study uses.
SUBSTITUTE = {
    "bench run --scale nano --activation swiglu,powlu --norm pre,pre+gpas,deepnorm+gpas --seed 0,1,2": (
        [f"bench run --scale nano --activation swiglu,powlu --norm pre,pre+gpas,deepnorm+gpas --seed 0 {FAST}"],
        "one seed of three, 2 steps"),
    "bench run zoo --scale nano --train.max_steps 50": (
        [f"bench run zoo --scale nano --activation swiglu,relu2 --norm pre,sandwich {FAST}"],
        "zoo is every activation x every scheme: 2 of each, 2 steps"),
    "bench run --recipe gpas --model.gpas_act tanh --train.lr 2e-3": (
        [f"bench run --recipe gpas --model.gpas_act tanh --train.lr 2e-3 --scale nano --activation swiglu "
         f"--norm pre+gpas {FAST}"], "one nano cell of the default matrix, 2 steps"),
    "bench data prepare ~/c4/en/ --tokenizer bytes --out ~/datasets/c4-bytes --workers 8": (
        ["bench data prepare ~/c4/en/ --tokenizer bytes --out ~/datasets/c4-bytes --workers 2"],
        "~/c4/en/ is a 2000-document stand-in the test writes; 2 processes"),
    "bench run --scale micro --data.corpus ~/datasets/c4-bytes --data.tokenizer dataset": (
        [f"bench run --scale nano --activation swiglu --norm pre --data.corpus ~/datasets/c4-bytes "
         f"--data.tokenizer dataset {FAST}"], "one nano cell, 2 steps"),
    "bench run --scale micro --data.corpus ~/datasets/c4-bytes --data.tokenizer dataset "
    "--data.eval books=~/datasets/books-bytes,bible=kjv": (
        [f"bench run --scale nano --activation swiglu --norm pre --data.corpus ~/datasets/c4-bytes "
         f"--data.tokenizer dataset --data.eval books=~/datasets/c4-bytes,bible=kjv {FAST}"],
        "one nano cell, 2 steps; the stand-in corpus plays the books domain"),
    "bench run --scale nano --out results &": (
        [f"bench run --scale nano --out results --activation swiglu --norm pre {FAST}"],
        "one cell, 2 steps, in the foreground: the second run then finds it done"),
    "bench run --scale nano --out results --wait": (
        [f"bench run --scale nano --out results --wait --activation swiglu --norm pre {FAST}"], "the same cell"),
    "bench run --scale nano --activation swiglu,gelu --norm pre,pre+gpas --seed 0,1,2 --train.val_every 25": (
        [f"bench run --scale nano --activation swiglu,gelu --norm pre,pre+gpas --seed 0,1 {FAST} "
         "--train.max_steps 4 --train.val_every 2"], "two seeds of three, 4 steps validated every 2"),
    "bench table default --at seconds=60": (
        ["bench table default --at seconds"], "4-step cells never reach 60 s: the axis alone takes the largest "
                                              "budget every cell reached"),
    "bench table default --at flops=2e12": (["bench table default --at flops"], "as --at seconds"),
    "bench sweep --scale nano --activation swiglu,gelu --norm pre --seed 0": (
        [f"bench sweep --scale nano --activation swiglu --norm pre --seed 0 --lr-points 2 {FAST}"],
        "2 LRs of one activation, 2 steps"),
    "bench table default-ladder --ladder --predict 1e7": (
        [f"bench ladder --scale nano --activation swiglu --norm pre --seed 0 --params 2e3:1e5 --rungs 2 {FAST}",
         "bench table default-ladder --ladder --predict 1e7"],
        "first a 2-rung nano ladder of 2-step cells to read (the README's ladder is a dry run)"),
    "bench run examples/plugin/matrix.yaml && bench report results/plugin-example": (
        [f"bench run examples/plugin/matrix.yaml --scale nano --norm pre,rezero_pre {FAST} "
         "&& bench report results/plugin-example"], "nano, 2 of its 3 schemes, 2 steps"),
    "python -m bench.cli run --scale micro-moe --activation swiglu,polynorm,powlu --norm pre,pre+gpas": (
        [f"python -m bench.cli run --scale nano-moe --activation swiglu,polynorm --norm pre {FAST}"],
        "the nano MoE scale, 2 activations, 2 steps"),
    "python -m bench.cli run --scale micro-moe --norm pre --model.ffn moe,dense": (
        [f"python -m bench.cli run --scale nano-moe --activation swiglu --norm pre --model.ffn moe,dense {FAST}"],
        "nano, one activation, 2 steps"),
    "bench run nano-precision --save-weights": (
        [f"bench run nano-precision --save-weights --activation swiglu {FAST}"], "one activation, 2 steps"),
    "bench run gpu-71m-precision": (["bench plan gpu-71m-precision"], "fp8 needs a CUDA GPU: planned, not trained"),
    "bench run zoo --scale gpas-71m --workers auto --train.accelerator gpu": (
        ["bench plan zoo --scale gpas-71m --train.accelerator gpu"], "needs GPUs: planned, not trained"),
    "bench run zoo --scale gpas-250m --workers 4 --devices-per-cell 2 --train.strategy ddp": (
        ["bench plan zoo --scale gpas-250m --train.strategy ddp --train.devices 2"],
        "needs 8 GPUs: planned (with the 2-device cells --devices-per-cell 2 makes), not trained"),
    "bench run zoo --scale nano --workers 2": (
        [f"bench run zoo --scale nano --workers 2 --activation swiglu,relu2 --norm pre {FAST}"],
        "2 cells of zoo, 2 steps"),
    "bench overhead --steps 50 --repeats 48 --train.compile true --threads 1": (
        ["bench overhead --scale nano --steps 3 --repeats 2 --train.compile false --threads 1 "
         "--train.throughput_warmup 1"], "nano, 2 pairs of 3 steps, eager: tests/test_overhead.py compiles pairs"),
    "bench overhead --steps 50 --repeats 32 --train.compile true": (
        ["bench overhead --scale nano --steps 3 --repeats 1 --train.compile false --train.throughput_warmup 1"],
        "nano, 1 pair of 3 steps, eager"),
    "bench overhead --scale nano --steps 400 --repeats 4 --train.compile true": (
        ["bench overhead --scale nano --steps 3 --repeats 1 --train.compile false --train.throughput_warmup 1 --json"],
        "1 pair of 3 steps, eager"),
    "bench run zoo --scale gpas-71m --slurm --partition gpu --time 240 --array-parallelism 16 "
    "--train.accelerator gpu --gpu a100-80gb": (
        ["bench run zoo --scale gpas-71m --slurm --partition gpu --time 240 --array-parallelism 16 "
         "--train.accelerator gpu --gpu a100-80gb --dry-run"], "no SLURM here: --dry-run lists the cells"),
}

SKIP = {
    "./install.sh && .venv/bin/bench run": "installs packages and trains the full default matrix (~6 min); "
                                           "the wheel test installs, the runs above train the default matrix",
    ".venv/bin/python -m pytest": "the test suite itself",
    ".venv/bin/python -m pytest benchmarks --benchmark-enable -n 0": "timed benchmarks, minutes",
    "aws s3 sync ~/datasets/c4-bytes s3://my-bucket/datasets/c4-bytes": "needs S3; tests/test_prepare.py "
                                                                         "streams from a local S3 server",
    "bench run --scale micro --data.corpus s3://my-bucket/datasets/c4-bytes --data.tokenizer dataset "
    "--data.storage_options endpoint_url=https://s3.us-east-1.amazonaws.com": "needs S3; as above",
    "bench eval nano-precision --tasks local_arc_easy --include-path configs/eval": "needs ARC's data "
        "(data/eval/arc_easy/*.jsonl, not shipped); tests/test_eval.py runs bench eval on a generated task",
    "scripts/device-wheels.sh": "downloads wheels; tests/test_device_check.py covers the device check",
    "scripts/device-check.sh RESULTS_DIR": "needs a GPU; tests/test_device_check.py runs its --dry-run",
}

# What a command's output must show (the README's comments say it).
EXPECT = {
    "bench plan --scale polycom-1b --activation swiglu,polynorm,powlu --norm pre --json":
        lambda plan: [c["intermediate_size"] for c in plan["cells"]] == [5504, 8256, 5504],
}


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


def test_every_readme_command_is_run_or_listed():
    commands = readme_commands(README.read_text())
    assert len(commands) > 20, "the README's command blocks were not found"
    listed = AS_WRITTEN | set(SUBSTITUTE) | set(SKIP)
    missing = [c for c in commands if c not in listed]
    assert not missing, "README commands this test neither runs nor lists (add them to AS_WRITTEN, " \
                        f"SUBSTITUTE or SKIP in tests/test_readme.py): {missing}"
    stale = sorted(listed - set(commands))
    assert not stale, f"entries for commands the README no longer has: {stale}"
    assert not (AS_WRITTEN & set(SUBSTITUTE)) and not (AS_WRITTEN & set(SKIP)) and not (set(SUBSTITUTE) & set(SKIP))


def test_readme_parser_reads_continuations_and_comments():
    text = "x\n```bash\n# a note\nbench run a \\\n  --b c   # why\n\nbench table\n```\n```yaml\nk: v\n```\n"
    assert readme_commands(text) == ["bench run a --b c", "bench table"]


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


@pytest.mark.slow  # ~60 s: every README example at 2 steps, one process; see the module docstring
def test_readme_commands_run(tmp_path):
    home = tmp_path
    for name in ("examples", "configs"):
        (home / name).symlink_to(ROOT / name)
    write_corpus(home / "c4" / "en")
    runs = []  # (README command, the commands run for it)
    for command in readme_commands(README.read_text()):
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
    assert not failed, "README commands that failed:\n" + "\n\n".join(
        f"$ bench {c}\nexit {code}\n{out}" for c, code, out in failed)
    i = 0
    for command, cmds in runs:
        for _ in cmds:
            check = EXPECT.get(command)
            if check:
                out = outputs[str(i)]
                assert check(json.JSONDecoder().raw_decode(out[out.index("{"):])[0]), (command, out[-2000:])
            i += 1
