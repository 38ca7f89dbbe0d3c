"""scripts/device_check.py's summary: every part's figures in one table, a missing or failed part said
so (CI runs the whole script with --dry-run; this checks the table's content without training)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device_check.py"


def load():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_reports_each_part_and_each_failure(tmp_path, capsys):
    dc = load()
    (tmp_path / "probe.json").write_text(json.dumps({
        "device": "NVIDIA H200", "versions": {"torch": "2.11.0"},
        "mfu_peak_bf16-true": {"flops": 989.4e12, "basis": "H200 SXM bf16 dense datasheet peak"},
        "measured_bf16_matmul_flops": 790e12,
        "fast_vs_reference": {"polynorm": {"out_rel_err": 1e-3, "grad_rel_err": 2e-3, "reference_bf16_ms": 2.0,
                                           "fast_bf16_ms": 1.0}, "powlu": {"error": "RuntimeError: boom"}}}))
    (tmp_path / "cost-71m.json").write_text(json.dumps({"rows": [
        {"scale": "gpas-71m", "activation": "swiglu", "kernels": "fused", "tokens_per_sec": 4e5, "mfu": 0.36,
         "peak_memory_bytes": 2**31, "step_time_vs_swiglu": 1.0},
        {"scale": "gpas-71m", "activation": "gelu", "kernels": "fused", "error": "OutOfMemoryError: x"}]}))
    assert dc.main(["summary", str(tmp_path)]) == 0
    text = (tmp_path / "summary.md").read_text()
    assert text == capsys.readouterr().out.rstrip("\n") + "\n"
    assert "NVIDIA H200" in text and "989.4 TFLOP/s" in text and "790.0 TFLOP/s" in text
    assert "2.00 -> 1.00 ms" in text and "RuntimeError: boom" in text
    assert "400,000 tok/s, 36.0% MFU, 2.00 GiB, 1.00x swiglu" in text and "OutOfMemoryError" in text
    assert "| overhead | - | no result |" in text


def test_dry_run_is_in_ci():
    ci = (SCRIPT.parents[1] / ".ci" / "run").read_text()
    assert "scripts/device-check.sh --dry-run" in ci
