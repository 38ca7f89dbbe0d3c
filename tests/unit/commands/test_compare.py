"""The results as a user gets them from real nano runs, through the CLI in-process: a sweep whose huge LR
diverges (and its grid's defaults and errors), a 3-seed matrix ranked three ways with paired statistics and
its report with every comparison figure, and a budget no cell reaches refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.results.stats.lr import lr_curves
from unit.results.support import three_cells


def test_real_nano_sweep_marks_a_huge_lr_diverged(tmp_path, capsys):
    """`bench sweep` through the ordinary runner: a sane LR trains, a huge one diverges (non-finite
    loss), and the frontier is the sane one. Nano scale, 6 steps."""
    from bench.cli import main
    from bench.results.records import load_records

    argv = ["sweep", "--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--seed", "0",
            "--lr-grid", "3e-3,1e6", "--train.max_steps", "6", "--train.val_every", "3", "--train.warmup_steps", "1",
            "--train.probe_every", "0", "--train.val_tokens", "1024", "--train.throughput_warmup", "1",
            "--data.ood_corpus", "none", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    recs, problems = load_records(tmp_path / "default-lr")
    assert not problems
    by_lr = {r.config["train"]["lr"]: r for r in recs}
    assert set(by_lr) == {3e-3, 1e6}
    assert by_lr[3e-3].status == "ok" and by_lr[1e6].status == "diverged"
    assert all("-lr" in r.id for r in recs)
    (c,) = lr_curves(recs)
    assert c.frontier == 3e-3 and c.diverged == [1e6] and c.best.lr == 3e-3
    assert c.sensitivity == pytest.approx((c.l0 - c.best.value) / 2)
    assert c.l0_basis == "measured" and c.l0 == pytest.approx(by_lr[3e-3].metrics.init_val_loss)  # not ln V
    out = capsys.readouterr().out
    assert "learning-rate robustness" in out and "Wortsman" in out and "every grid point" in out
    # a rerun trains nothing: resume applies to the sweep's cells as to `bench run`
    assert main(argv) == 0
    assert "all 2 cells of default-lr are done" in capsys.readouterr().out


def test_lr_grid_defaults_and_errors():
    from bench.errors import ConfigError
    from bench.run.config.sweep import lr_grid, parse_grid

    g = lr_grid(3e-3)
    assert len(g) == 7 and g[0] == pytest.approx(3e-4) and g[-1] == pytest.approx(3e-2) and 3e-3 in g
    assert np.allclose(np.diff(np.log10(g)), 1 / 3, atol=0.01)  # log-spaced: 7 points over 2 decades
    assert parse_grid("1e-2, 1e-3") == [1e-3, 1e-2]
    for bad in ("1e-3", "1e-3,abc", "1e-3,-1"):
        with pytest.raises(ConfigError, match="lr-grid"):
            parse_grid(bad)


@pytest.mark.slow  # trains a 3-seed nano matrix
def test_real_nano_matrix_table_and_report_show_every_comparison(tmp_path, capsys):
    """A real 3-seed nano matrix (2 activations x pre+gpas x 3 seeds, 8 steps, validated every 2): `bench
    table --at` ranks it three ways with paired statistics, and `bench report` renders every comparison
    figure; every embedded image decodes as a PNG."""
    import base64
    import io
    import re
    from html.parser import HTMLParser

    from PIL import Image

    from bench.cli import main

    common = ["--scale", "nano", "--activation", "swiglu,gelu", "--norm", "pre+gpas", "--seed", "0,1,2",
              "--train.max_steps", "8", "--train.val_every", "2", "--train.warmup_steps", "1",
              "--train.probe_every", "4", "--train.val_tokens", "1024", "--train.throughput_warmup", "1",
              "--data.ood_corpus", "none"]
    assert main(["run", *common, "--out", str(tmp_path), "--quiet"]) == 0
    capsys.readouterr()
    folder = tmp_path / "default"
    assert main(["table", str(folder), "--format", "md", "--at", "seconds"]) == 0
    md = capsys.readouterr().out
    # 8 nano steps learn nothing beyond token frequencies: said in one line, and no cell is tested
    assert "Not learned (every cell): 2 group(s)" in md and "likely too few steps (8 optimizer steps)" in md
    assert "paired t (t=" not in md and "| not learned |" in md
    for path in folder.glob("*/record.json"):  # as if a longer run had beaten the references
        rec = json.loads(path.read_text())
        rec["data"]["unigram_ppl"] = 1e6
        path.write_text(json.dumps(rec))
    assert main(["table", str(folder), "--format", "md", "--at", "seconds"]) == 0
    md = capsys.readouterr().out
    assert "Not learned" not in md
    assert "## Paired statistics against the baseline" in md and "paired t (t=" in md and "p_holm" in md
    assert "## Ranking at equal time (training seconds)" in md
    assert "## Rankings at equal steps, equal compute and equal time" in md
    assert re.search(r"\| nano \| (swiglu|gelu) \| pre\+gpas \| [12] \| [12] \| [12] \|", md)
    assert "estimated" not in md  # the seconds come from the logged time column
    assert main(["table", str(folder), "--at", "tokens=5"]) == 2  # one clear line, exit 2
    assert "valid axes: steps, flops, seconds" in capsys.readouterr().err

    assert main(["report", str(folder)]) == 0
    text = (folder / "report.html").read_text()
    links = []

    class Links(HTMLParser):
        def handle_starttag(self, tag, attrs):
            links.extend(v for k, v in attrs if k == "src")

    Links().feed(text)
    pngs = [base64.b64decode(v.split(",", 1)[1]) for v in links if v.startswith("data:image/png;base64,")]
    # loss curves and frontier, the six comparison figures, the outliers-under-precision figure,
    # two probe figures per cell
    assert len(pngs) == len(links) and len(pngs) == 2 + 6 + 1 + 2 * 6
    assert "Outliers under precision" in text
    for data in pngs:
        im = Image.open(io.BytesIO(data))
        im.verify()
        assert im.format == "PNG"
    for heading in ("Paired statistics against the baseline", "Equal steps, equal compute, equal time",
                    "Per-layer activation variance at the end of training", "GPAS gate trajectories by scheme",
                    "Effective rank per FFN matrix", "Layer cosine similarity", "Validation loss with seed bands"):
        assert heading in text, heading
    assert text.count("<details>") == 6 and "nothing to plot" not in text.lower()


def test_a_budget_no_cell_reaches_is_refused_in_one_line(tmp_path, capsys):
    from bench.cli import main

    recs, curves = three_cells()
    folder = tmp_path / "m"
    for r in recs:
        (folder / r.id).mkdir(parents=True)
        (folder / r.id / "record.json").write_text(json.dumps(r.to_dict()))
        rows = ["epoch,step,time/train_seconds,train/loss,val/loss"]
        rows += [f"0,{s},{v_s},,{v}" for (s, v), (_, v_s) in zip(curves[r.id]["val/loss"],
                                                                     curves[r.id]["time/train_seconds"])]
        (folder / r.id / "metrics.csv").write_text("\n".join(rows) + "\n")
    assert main(["table", str(folder), "--at", "flops=5e12"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--at flops=5e+12 is outside every cell's validation curve" in err
    assert "steps 40 steps to 200 steps" in err and "flops 4e+10 FLOPs to 2e+11 FLOPs" in err
    assert "seconds 40.0 s to 200.0 s" in err
    assert main(["table", str(folder), "--format", "md", "--at", "flops=1e11"]) == 0
