"""bench report (bench/results/report.py): a self-contained HTML page from synthetic records (no training
here), its sections data fed to autoescaped templates: the leaderboard, views, figures, scaling laws,
probes (every registered probe's results included) and provenance."""

from __future__ import annotations

import argparse
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bench.commands import report as report_command
from bench.errors import ConfigError
from bench.results.records import Record, RecordError, load_records
from bench.results.report import render_html, write_report
from bench.results.stats.laws import fit_laws

from .support import CROSS, DATA_URI, IMG, ladder, write_matrix

ROOT = Path(__file__).resolve().parents[3]

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
    assert "Welch&#39;s t-test" in text and "p &lt; 0.05" in text and "95% CI" in text
    assert "tokens_to_target" in text and "not reached" not in text.split("All cells")[0]
    # scaling laws across 2 scales: the pure power law, with its exponent (0.1 by construction) and interval
    assert '<h2 id="scaling-laws">Scaling laws (across scales)</h2>' in text and "L = A x^-alpha" in text
    laws = text.split('id="scaling-laws"')[1].split("<h2")[0]
    fits = {f.group: f for f in fit_laws(load_records(folder)[0]).fits}
    assert len(fits) == 4 and fits["swiglu:pre"].alpha == pytest.approx(0.1, abs=1e-3)  # seeds +-0.01 around it
    assert all(f"<td>{f.alpha:.3f}</td>" in laws for f in fits.values()) and "90% percentile intervals" in laws
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
    assert "Probes" not in text and 'id="scaling-laws"' not in text  # one scale: no law
    assert "(n=1) (base)" in text and "No significance test was possible here" in text
    assert "powlu x pre" in text and not re.search(r"\d ± \d", text)  # n=1: no interval anywhere
    assert not re.search(r"\(n=1\)[*†]", text)  # and no mark


def test_report_skips_missing_or_malformed_probes(tmp_path):
    folder, _ = write_matrix(tmp_path, with_probes=True, scales=("micro",), seeds=(0, 1))
    recs = [json.loads(p.read_text()) for p in sorted(folder.glob("*/record.json"))]
    probed = [r for r in recs if r["probes"]]
    del probed[0]["probes"]["gpas_gate"]  # a key missing
    probed[1]["probes"]["layer_cosine"] = None
    recs.append({**recs[0], "id": "failed-cell", "status": "failed", "metrics": None, "probes": None})
    ragged = {**probed[1], "probes": {**probed[1]["probes"], "act_var": [[1.0], [1.0, 2.0]]}}
    with pytest.raises(RecordError, match="probes.act_var is a ragged list"):  # refused whole when read
        Record.from_dict(ragged)
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

    assert resources.files("bench.results").joinpath("templates", report.TEMPLATE).is_file()
    folder, _ = write_matrix(tmp_path, with_probes=False, scales=("nano",), seeds=(0,))
    recs = [Record.from_dict(json.loads(p.read_text())) for p in sorted(folder.glob("*/record.json"))]
    # a hostile matrix name and cell id reach the page as text, never as markup
    recs[0] = Record.from_dict({**recs[0].to_dict(), "id": "<script>alert('x')</script>&"})
    text = render_html(recs, '<b onload="x">&m</b>')
    c = parse(text)
    assert "<script" not in text and "<b " not in text and "&lt;b onload=&#34;x&#34;&gt;&amp;m&lt;/b&gt;" in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;" in text  # escaped once, not twice
    # every section heading carries its anchor, in the page's order, each once
    anchors = re.findall(r'<h2 id="([^"]+)">', text)
    assert anchors[:3] == ["leaderboard", "curves", "views"] and anchors[-1] == "provenance"
    assert len(anchors) == len(set(anchors)) == c.tags.count("h2")
    # a section added to the list is on the page: data, escaped as text
    built = report.sections
    monkeypatch.setattr(report, "sections", lambda *a: [*built(*a), report.Section(
        "Extra & more", "extra", [report.Note("<i>hi</i>"), report.Code("a < b"), None])])
    text = render_html(recs, "m")
    parse(text)
    assert ('<h2 id="extra">Extra &amp; more</h2>\n<p class="note">&lt;i&gt;hi&lt;/i&gt;</p>\n'
            '<pre><code>a &lt; b</code></pre>') in text


def png_size(b64: str) -> tuple[int, int]:
    import base64
    import struct

    return struct.unpack(">II", base64.b64decode(b64)[16:24])  # the IHDR chunk's width, height


def test_every_figure_is_drawn_in_the_one_style():
    import bench.results
    from bench.results import figures as style
    from bench.results.figures.cells import fig_outliers, fig_routing_lines

    root = Path(bench.results.__file__).parent
    for path in root.rglob("*.py"):  # one place makes figures and PNGs: figures/__init__.py
        if path != root / "figures" / "__init__.py":
            src = path.read_text()
            assert "Figure(" not in src and "savefig" not in src and "rc_context" not in src and "dpi" not in src, path
    sites = {"ffn_hidden": {"max_abs": [[1.0, 500.0]], "e4m3_under": [[0.0, 0.1]]}}
    rec = Record.from_dict({"id": "c", "status": "failed", "scale": "nano", "activation": "powlu", "norm": "pre",
                            "seed": 0, "precision": "bf16-true", "outliers": {"steps": [5], "sites": sites}})
    assert png_size(fig_outliers([rec])) == (round(10.5 * style.DPI), round(2.9 * style.DPI))
    moe = {"steps": [0, 10], "load_max_over_mean": [[1.0, 1.2], [1.1, 1.0]], "router_entropy": [[1.3, 1.2],
                                                                                                 [1.1, 1.0]]}
    assert png_size(fig_routing_lines(moe)) == (round(6.0 * style.DPI), round(2.4 * style.DPI))


# ---- scaling laws, registered probes --------------------------------------------------------------

def test_the_page_carries_the_laws_of_a_ladder_and_of_scales_and_nothing_for_one_scale():
    page = render_html(ladder(), "ladder")
    parse(page)
    assert page.count('id="scaling-laws"') == 1 and page.count("Scaling laws (scale ladder)") == 1
    laws = page.split('id="scaling-laws"')[1].split("<h2")[0]
    assert "<h3>Crossovers</h3>" in laws and "In training compute" in laws and laws.count(DATA_URI) == 1
    x = float(re.search(r'<td class="l">swiglu:pre / polynorm:pre</td><td>([0-9.e+]+)</td>', laws).group(1))
    assert x == pytest.approx(CROSS, rel=0.25)
    committed, problems = load_records(ROOT / "results" / "ladder-example")
    assert committed and not problems
    assert 'id="scaling-laws"' in render_html(committed, "example")
    assert 'id="scaling-laws"' not in render_html(ladder(ladder=False), "one scale, no rungs")


def test_every_registered_probes_results_get_a_table():
    """A plugin's probe (record['extra_probes']): scalars, nested keys, short lists spread over columns,
    long ones summarized; a cell without the probe has no row; hostile names reach the page as text."""
    recs = [Record.from_dict(r) for r in (
        {"id": "c0", "status": "ok", "scale": "nano", "activation": "relu2_glu", "norm": "rezero_pre", "seed": 0,
         "metrics": {"val_loss": 2.0}, "extra_probes": {"rezero_alpha": {"alpha": [[0.5, 0.25], [0.125, 1.0]]},
                                                        "<b>probe</b>": {"n": 3, "trace": list(range(40)),
                                                                         "stats": {"mean": 1.5, "ok": True}}}},
        {"id": "c1", "status": "ok", "scale": "nano", "activation": "swiglu", "norm": "pre", "seed": 0,
         "metrics": {"val_loss": 2.1}, "extra_probes": {"rezero_alpha": {"alpha": [[0.75, 2.0], [1.0, 1.0]]}}},
        {"id": "c2", "status": "ok", "scale": "nano", "activation": "gelu", "norm": "pre", "seed": 0,
         "metrics": {"val_loss": 2.2}})]
    page = render_html(recs, "m")
    parse(page)
    section = page.split('id="registered-probes"')[1].split("<h2")[0]
    assert "<h3>rezero_alpha</h3>" in section and "<h3>&lt;b&gt;probe&lt;/b&gt;</h3>" in section
    alpha = section.split("<h3>rezero_alpha</h3>")[1].split("</table>")[0]
    assert re.findall(r"<th>([^<]+)</th>", alpha) == ["alpha[0][0]", "alpha[0][1]", "alpha[1][0]", "alpha[1][1]"]
    assert "<td>0.125</td>" in alpha and "c2" not in alpha
    other = section.split("&lt;b&gt;probe&lt;/b&gt;")[1]
    assert "<td>40 values, 0 to 39</td>" in other and "<th>stats.mean</th>" in other and "<td>yes</td>" in other
    assert 'id="registered-probes"' not in render_html(recs[2:], "m")


def test_the_report_and_the_ladder_table_give_one_law_for_the_same_records(tmp_path, capsys):
    """One fitter: a matrix at two scales gets the same exponents and intervals on the report's page as from
    `bench table --ladder` (they once came from two fitters, curve_fit's 95% SE and the seed bootstrap)."""
    from bench import cli

    folder, _ = write_matrix(tmp_path, with_probes=False)
    assert cli.main(["table", str(folder), "--ladder", "--format", "md"]) == 0
    md = capsys.readouterr().out
    rows = [r for ln in md.splitlines() if (r := ln.split(" | "))[1:2] in (["N"], ["C"])]  # the laws in N and C
    assert len(rows) == 8 and [r[1] for r in rows] == ["N"] * 4 + ["C"] * 4
    assert cli.main(["report", str(folder)]) == 0
    laws = (folder / "report.html").read_text().split('id="scaling-laws"')[1].split("<h2")[0]
    for r in rows:  # group, x, form, ..., alpha, alpha CI
        alpha, interval = r[5], r[6]
        assert interval.startswith("[") and f"<td>{alpha}</td><td>{interval}</td>" in laws, r
