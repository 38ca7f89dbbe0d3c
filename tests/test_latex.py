"""`bench table --format latex`: booktabs tables with the markdown leaderboard's columns, CIs and marks,
every text escaped, the notes (MFU basis...) as footnotes; run as a user would, in a subprocess."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.results.latex import _SPECIAL, tex
from bench.results.leaderboard import long_columns
from bench.results.records import load_records
from test_report import write_matrix

ROOT = Path(__file__).resolve().parents[1]


def bench(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1"})


def untex(text: str) -> str:
    """The inverse of ``tex``: longest replacement first, anything else is itself."""
    back = sorted(((v, k) for k, v in _SPECIAL.items()), key=lambda kv: -len(kv[0]))
    out, i = [], 0
    while i < len(text):
        for v, k in back:
            if text.startswith(v, i):
                out.append(k)
                i += len(v)
                break
        else:
            assert text[i] not in _SPECIAL, f"unescaped {text[i]!r} at {i} in {text!r}"
            out.append(text[i])
            i += 1
    return "".join(out)


def test_escaping_round_trips_over_random_texts():
    rng = random.Random(0)
    alphabet = list(_SPECIAL) + list("abc 019.-()[]=,/'\"")
    for _ in range(500):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert untex(tex(s)) == s
    assert tex("relu2_glu 5% a&b #1 {x} ~^ \\") == (r"relu2\_glu 5\% a\&b \#1 \{x\} \textasciitilde{}"
                                                    r"\textasciicircum{} \textbackslash{}")


def tables(text: str) -> list[dict]:
    """Each table environment: its caption, column spec, rows (cells split on unescaped &) and footnotes."""
    out = []
    for block in re.findall(r"\\begin\{table\}\[htbp\]\n(.*?)\\end\{table\}", text, re.S):
        spec = re.search(r"\\begin\{tabular\}\{([lr]+)\}", block).group(1)
        assert block.count("\\toprule") == block.count("\\midrule") == block.count("\\bottomrule") == 1
        body = block.split("\\toprule\n")[1].split("\\bottomrule")[0].replace("\\midrule\n", "")
        rows = [re.split(r"(?<!\\)&", ln.removesuffix(r" \\")) for ln in body.splitlines()]
        assert all(ln.endswith(r" \\") for ln in body.splitlines())
        foot = block.split("{\\footnotesize\n")[1].split("\n}")[0] if "\\footnotesize" in block else ""
        out.append({"caption": re.search(r"\\caption\{(.*)\}\n", block).group(1), "spec": spec,
                    "rows": [[c.strip() for c in r] for r in rows], "foot": foot, "block": block})
    return out


def test_table_latex_from_the_cli_has_booktabs_cis_marks_and_footnotes(tmp_path):
    folder, _ = write_matrix(tmp_path, with_probes=False)
    r = bench("table", str(folder), "--format", "latex", "--target-loss", "3.2")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert text.startswith("% synth: leaderboard\n% needs \\usepackage{booktabs}")
    assert text.count("\\begin{table}") == text.count("\\end{table}") == len(tables(text))
    tabs = tables(text)
    for t in tabs:  # every row has as many cells as the column spec, and no text is left unescaped
        assert all(len(row) == len(t["spec"]) for row in t["rows"]), t["caption"]
        for cell in [c for row in t["rows"] for c in row] + [t["caption"]] + t["foot"].split(r"\par"):
            untex(cell.replace(r"\par", ""))
    pivots = [t for t in tabs if "final validation PPL" in t["caption"]]
    assert [t["caption"].split(": ")[0] for t in pivots] == ["synth, nano", "synth, micro"]
    nano = {row[0]: row[1:] for row in pivots[0]["rows"][1:]}
    assert pivots[0]["rows"][0] == ["activation", "pre", "pre+gpas"]
    # mean ± CI (n) with the marks: swiglu/pre+gpas better, powlu worse, swiglu/pre the baseline
    assert re.fullmatch(r"\d+\.\d{3} \$\\pm\$ \d+\.\d{3} \(n=3\) \(base\)", nano["swiglu"][0])
    assert nano["swiglu"][1].endswith("(n=3)$^{*}$") and nano["powlu"][0].endswith("(n=3)$^{\\dagger}$")
    assert "Holm-corrected" in pivots[0]["foot"] and "p \\textless{} 0.05" in pivots[0]["foot"]
    paired = next(t for t in tabs if "paired statistics" in t["caption"])
    assert paired["rows"][0][:3] == ["scale", "activation", "norm"] and "delta\\_loss" in paired["rows"][0]
    assert "\\resizebox{\\textwidth}" in paired["block"]
    assert any(t["caption"].endswith("rankings at equal steps, equal compute and equal time") for t in tabs)
    long = tabs[-1]
    records, _ = load_records(folder)
    assert len(long["rows"]) == 1 + len(records) and len(long["spec"]) == len(long_columns(3.2, records))
    assert "MFU (\\%)" in long["rows"][0] and "tokens to target" in long["rows"][0]
    assert all(c.endswith("\\%") for c in (row[long["rows"][0].index("MFU (\\%)")] for row in long["rows"][1:]))
    assert any("pre\\_gpas" in c for row in long["rows"] for c in row)  # the cell ids' underscores
    assert "MFU is against: test" in long["foot"] and "Time to target" in long["foot"]


@pytest.mark.parametrize("argv, message", [
    (["--ladder"], "--ladder prints rich or md, not latex"),
    (["--at", "steps=1e9"], "is outside every cell's validation curve"),
])
def test_table_latex_errors_are_one_line(tmp_path, argv, message):
    folder, _ = write_matrix(tmp_path, with_probes=False, scales=("nano",), seeds=(0,))
    r = bench("table", str(folder), "--format", "latex", *argv)
    assert r.returncode == 2 and r.stdout == "" and message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_table_help_names_latex():
    r = bench("table", "--help")
    assert r.returncode == 0 and "latex" in r.stdout and "booktabs" in r.stdout
