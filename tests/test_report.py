"""bench report: a self-contained HTML page from synthetic records (no training here)."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.commands import report as report_command
from bench.results.records import Record
from bench.results.report import render_html, write_report

SCALES = {"nano": 10_000, "micro": 80_000}  # non-embedding parameters
ACTS = ("swiglu", "powlu")
NORMS = ("pre", "pre+gpas")
IMG = '<img alt="'  # every figure: <img alt="..." src="data:image/png;base64,...">
DATA_URI = 'src="data:image/png;base64,'


def final_loss(scale, act, norm, seed):
    """swiglu/pre+gpas clearly better and powlu/pre clearly worse than swiglu/pre at each scale."""
    base = 3.0 * (SCALES[scale] / 10_000) ** -0.1
    shift = {("swiglu", "pre"): 0.0, ("swiglu", "pre+gpas"): -0.2, ("powlu", "pre"): 0.3,
             ("powlu", "pre+gpas"): 0.01}[(act, norm)]
    return base + shift + 0.01 * (seed - 1)


def probes(n_layers=2, gpas=False):
    steps = [0, 10, 20, 30]
    per_block = [[0.1 * (i + 1) + 0.01 * j for j in range(n_layers)] for i in range(len(steps))]
    return {
        "every": 10, "steps": steps,
        "act_var": [[1.0 + i + j for j in range(n_layers + 1)] for i in range(len(steps))],
        "grad_norm": per_block, "weight_norm": per_block,
        "gpas_gate": per_block if gpas else None, "gpas_scale": per_block if gpas else None,
        "ffn_max_abs": [[5.0 * (i + 1) * (j + 1) for j in range(n_layers)] for i in range(len(steps))],
        "ffn_kurtosis": [[3.0 + i + j for j in range(n_layers)] for i in range(len(steps))],
        "loss_spikes": 2, "spike_steps": [12, 27],
        "effective_rank": {f"blocks.{b}.ffn.{m}": 10.0 + b + k for b in range(n_layers)
                           for k, m in enumerate(("up", "gate", "down"))},
        "layer_cosine": [[1.0 if i == j else 0.5 for j in range(n_layers + 1)] for i in range(n_layers + 1)],
        "layer_importance": [0.3, 0.1][:n_layers], "base_loss": 2.9, "overhead_seconds": 0.4,
    }


def write_matrix(root: Path, with_probes: bool, scales=tuple(SCALES), seeds=(0, 1, 2)) -> tuple[Path, int]:
    """Records and curves of a synthetic matrix; returns (folder, number of cells with probes)."""
    folder = root / "synth"
    n_probed = 0
    clock = itertools.count()  # start times in matrix order, as `bench run` trains the cells
    for scale in scales:
        for act in ACTS:
            for norm in NORMS:
                for seed in seeds:
                    cid = f"{scale}-{act}-{norm.replace('+', '_')}-s{seed}-abc123"
                    loss = final_loss(scale, act, norm, seed)
                    rec = {
                        "id": cid, "matrix": "synth", "status": "ok", "config_hash": "abc123def0",
                        "activation": act, "norm": norm, "scale": scale, "seed": seed,
                        "config": {"seed": seed, "scale": scale, "model": {"block_size": 16},
                                   "train": {"batch_size": 4, "grad_accum": 1}, "data": {"tokenizer": "bytes"}},
                        "params": {"total": SCALES[scale] + 4096, "non_embedding": SCALES[scale]},
                        "data": {"unigram_ppl": 60.0, "tokenizer_fingerprint": "677c5dd8aa"},
                        "metrics": {"val_loss": loss, "val_ppl": math.exp(loss), "ood_loss": loss + 0.2,
                                    "ood_ppl": math.exp(loss + 0.2), "train_loss": loss - 0.05,
                                    "tokens_per_sec": (3000.0 if act == "swiglu" else 1800.0)
                                    / (SCALES[scale] / 10_000) + 10 * seed,
                                    "mfu": 0.01, "peak_memory_bytes": 2**28, "train_seconds": 8.0,
                                    "steps": 40, "tokens": 40 * 64, "mfu_basis": "test", "peak_memory_basis": "test"},
                        "wall_seconds": 10.0, "precision": "32-true",
                        "started": f"2026-01-01T00:{next(clock):02d}:00+00:00",
                        "command": ["bench", "run", "synth"],
                        "environment": {"packages": {"torch": "2.13.0", "lightning": "2.6.6"}, "python": "3.11.9",
                                        "device": "test CPU", "platform": "linux",
                                        "git": {"commit": "0123456789abcdef" * 2 + "01234567", "dirty": False}},
                    }
                    if with_probes and scale == "micro" and act == "swiglu" and seed == 0:
                        rec["probes"] = probes(gpas=norm.endswith("gpas"))
                        n_probed += 1
                    else:
                        rec["probes"] = None
                    d = folder / cid
                    d.mkdir(parents=True)
                    (d / "record.json").write_text(json.dumps(rec))
                    rows = ["epoch,ood/loss,ood/ppl,step,train/loss,val/loss,val/ppl"]
                    for s in range(9, 40, 10):
                        v = loss + 1.5 * (39 - s) / 39
                        rows.append(f"0,,,{s},{v + 0.05},,")
                        if s % 20 == 19:
                            rows.append(f"0,{v + 0.2},{math.exp(v + 0.2)},{s},,{v},{math.exp(v)}")
                    (d / "metrics.csv").write_text("\n".join(rows) + "\n")
    return folder, n_probed


class Checker(HTMLParser):
    """Collects tags and src/href values and checks that every non-void element is closed in order."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.links, self.tags = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [v for k, v in attrs if k in ("src", "href") and v]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def parse(text: str) -> Checker:
    c = Checker()
    c.feed(text)
    c.close()
    assert not c.errors and not c.stack, (c.errors, c.stack)
    return c


def run_cli(*argv) -> int:
    parser = argparse.ArgumentParser(prog="bench")
    report_command.add_parser(parser.add_subparsers(dest="command", required=True))
    return report_command.main(parser.parse_args(["report", *argv]))


def test_report_with_probes_ci_marks_and_scaling(tmp_path, capsys):
    folder, n_probed = write_matrix(tmp_path, with_probes=True)
    assert run_cli(str(folder), "--target-loss", "3.2") == 0
    out = folder / "report.html"
    assert out.is_file() and str(out) in capsys.readouterr().out
    text = out.read_text()
    c = parse(text)
    # one figure each: loss curves, frontier, scaling; two per probed cell (dynamics, structure); six that
    # compare cells (view ranks, loss with seed bands, activation variance by scheme, GPAS gates, effective
    # rank, layer cosine)
    assert n_probed == 2
    assert text.count(DATA_URI) == 3 + 6 + 2 * n_probed == sum(1 for link in c.links
                                                               if link.startswith("data:image/png"))
    assert text.count("<details>") == n_probed  # per-cell probe figures are collapsed
    assert text.count(IMG) == text.count(DATA_URI)
    assert all(not link.lower().startswith(("http", "//")) and "http" not in link for link in c.links)
    assert "<script" not in text and "<link" not in text
    # leaderboard: pivots per scale with CI, marks, baseline and the test's legend
    assert "nano: final validation PPL (mean ± 95% CI over seeds)" in text
    assert "micro: final validation PPL" in text
    assert re.search(r"\d+\.\d{3} ± \d+\.\d{3} \(n=3\) \(base\)", text)
    assert re.search(r"\(n=3\)\*</td>", text) and re.search(r"\(n=3\)†</td>", text)
    assert "Welch&#x27;s t-test" in text and "p &lt; 0.05" in text and "95% CI" in text
    assert "tokens_to_target" in text and "not reached" not in text.split("All cells")[0]
    # scaling fit with 2 scales: the pure power law, with its exponent
    assert "Scaling" in text and "log L = log A - alpha log x" in text
    assert "0.1000 ±" in text  # every group's exponent is 0.1 by construction
    # probes and provenance
    assert "Probes" in text and "loss spikes: 2 (steps 12, 27)" in text
    assert "Provenance" in text and "abc123def0" in text and "0123456789ab" in text and "torch 2.13.0" in text
    assert out.stat().st_size < 2 * 2**20


def test_report_without_probes_single_scale_and_options(tmp_path):
    folder, _ = write_matrix(tmp_path, with_probes=False, scales=("nano",), seeds=(0,))
    target = tmp_path / "elsewhere" / "r.html"
    assert run_cli(str(folder), "--out", str(target), "--baseline", "powlu:pre") == 0
    text = target.read_text()
    parse(text)
    assert text.count(DATA_URI) == 4  # curves, frontier, view ranks, seed bands; no scaling, no probes
    assert "Probes" not in text and "<h2>Scaling" not in text
    assert "(n=1) (base)" in text and "No significance test was possible here" in text
    assert "powlu x pre" in text and not re.search(r"\d ± \d", text)  # n=1: no interval anywhere
    assert not re.search(r"\(n=1\)[*†]", text)  # and no mark


def test_report_skips_missing_or_malformed_probes(tmp_path):
    folder, _ = write_matrix(tmp_path, with_probes=True, scales=("micro",), seeds=(0, 1))
    recs = [json.loads(p.read_text()) for p in sorted(folder.glob("*/record.json"))]
    probed = [r for r in recs if r["probes"]]
    del probed[0]["probes"]["gpas_gate"]  # a key missing
    probed[1]["probes"]["act_var"] = [[1.0], [1.0, 2.0]]  # ragged: that panel is skipped
    probed[1]["probes"]["layer_cosine"] = None
    recs.append({**recs[0], "id": "failed-cell", "status": "failed", "metrics": None, "probes": None})
    text = render_html([Record.from_dict(r) for r in recs], "synth")
    parse(text)
    # no curves passed: the frontier, four comparisons of the probes (activation variance, GPAS gates,
    # effective rank, layer cosine), then two per probed cell
    assert text.count(DATA_URI) == 1 + 4 + 2 * 2


def test_report_errors(tmp_path):
    folder, _ = write_matrix(tmp_path, with_probes=False, scales=("nano",), seeds=(0,))
    with pytest.raises(ConfigError, match="ACTIVATION:NORM"):
        run_cli(str(folder), "--baseline", "swiglu")
    with pytest.raises(ConfigError, match="valid:"):
        run_cli(str(folder), "--baseline", "relu:pre")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no finished cells"):
        write_report(tmp_path / "empty")
    other, _ = write_matrix(tmp_path / "second", with_probes=False, scales=("nano",), seeds=(0,))
    (tmp_path / "both").mkdir()
    folder.rename(tmp_path / "both" / "a")
    other.rename(tmp_path / "both" / "b")
    with pytest.raises(ConfigError, match="holds 2 matrices"):
        write_report(tmp_path / "both", out=tmp_path / "x.html")
    written = write_report(tmp_path / "both")
    assert written == [tmp_path / "both" / "a" / "report.html", tmp_path / "both" / "b" / "report.html"]


def test_report_help_documents_options(capsys):
    with pytest.raises(SystemExit):
        run_cli("--help")
    out = capsys.readouterr().out
    for opt in ("--out", "--baseline", "--target-loss", "--results", "ACT:NORM"):
        assert opt in out


def test_page_is_the_packaged_template_autoescaped_with_sections_as_data(tmp_path, monkeypatch):
    from importlib import resources

    from bench.results import report
    from bench.results.html import Section

    assert resources.files("bench.results").joinpath("templates", report.TEMPLATE).is_file()
    folder, _ = write_matrix(tmp_path, with_probes=False, scales=("nano",), seeds=(0,))
    recs = [Record.from_dict(json.loads(p.read_text())) for p in sorted(folder.glob("*/record.json"))]
    # a hostile matrix name and cell id reach the page as text, never as markup
    recs[0] = Record.from_dict({**recs[0].to_dict(), "id": "<script>alert('x')</script>&"})
    text = render_html(recs, '<b onload="x">&m</b>')
    c = parse(text)
    assert "<script" not in text and "<b " not in text and "&lt;b onload=&#34;x&#34;&gt;&amp;m&lt;/b&gt;" in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;" in text  # escaped once, not twice
    # every section heading carries its anchor, in the page's order, each once
    anchors = re.findall(r'<h2 id="([^"]+)">', text)
    assert anchors[:3] == ["leaderboard", "curves", "views"] and anchors[-1] == "provenance"
    assert len(anchors) == len(set(anchors)) == c.tags.count("h2")
    # a section added to the list is on the page, its title escaped, its body as given
    built = report.sections
    monkeypatch.setattr(report, "sections", lambda *a: [*built(*a), Section.of("Extra & more", "extra",
                                                                               ['<p class="note">hi</p>'])])
    text = render_html(recs, "m")
    parse(text)
    assert '<h2 id="extra">Extra &amp; more</h2>\n<p class="note">hi</p>' in text


def png_size(b64: str) -> tuple[int, int]:
    import base64
    import struct

    return struct.unpack(">II", base64.b64decode(b64)[16:24])  # the IHDR chunk's width, height


def test_every_figure_is_drawn_in_the_one_style():
    import bench.results
    from bench.results.figures import style
    from bench.results.moe_report import fig_routing_lines
    from bench.results.precision_report import fig_outliers

    root = Path(bench.results.__file__).parent
    for path in root.rglob("*.py"):  # one place makes figures and PNGs: figures/style.py
        if path != root / "figures" / "style.py":
            src = path.read_text()
            assert "Figure(" not in src and "savefig" not in src and "rc_context" not in src and "dpi" not in src, path
    sites = {"ffn_hidden": {"max_abs": [[1.0, 500.0]], "e4m3_under": [[0.0, 0.1]]}}
    rec = Record.from_dict({"id": "c", "status": "failed", "scale": "nano", "activation": "powlu", "norm": "pre",
                            "seed": 0, "precision": "bf16-true", "outliers": {"steps": [5], "sites": sites}})
    assert png_size(fig_outliers([rec])) == (round(10.5 * style.DPI), round(2.9 * style.DPI))
    moe = {"steps": [0, 10], "load_max_over_mean": [[1.0, 1.2], [1.1, 1.0]], "router_entropy": [[1.3, 1.2],
                                                                                                 [1.1, 1.0]]}
    assert png_size(fig_routing_lines(moe)) == (round(6.0 * style.DPI), round(2.4 * style.DPI))
