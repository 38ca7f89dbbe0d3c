"""scripts/device_check.py's summary: every part's figures in one table, a missing or failed part said
so (CI runs the whole script with --dry-run; this checks the table's content without training); the peak
the printed device name selects; the wheels it carries to the GPU image (scripts/gpu_image.py) and the
dry run's rule that only the image's packages, those wheels and the project import."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "device_check.py"


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


# ---- the GPU image: the carried wheels, the dry run's import rule, the peak the device name selects -------

RULE = SCRIPT.parent / "gpu_image.py"


def load_rule():
    spec = importlib.util.spec_from_file_location("gpu_image", RULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name,kind,bf16,fp8", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.4, 1978.9),  # the lent H100 kind
    ("NVIDIA H200", "H200 SXM", 989.4, 1978.9),  # the lent H200 kind
    ("NVIDIA H100 PCIe", "H100 PCIe", 756.5, 1513.0),
])
def test_the_printed_device_name_selects_the_peak(name, kind, bf16, fp8):
    peaks = load().peaks(torch.device("cuda"), name)
    for precision in ("bf16-true", "bf16-mixed"):
        assert peaks[f"mfu_peak_{precision}"]["flops"] == pytest.approx(bf16 * 1e12)
        assert peaks[f"mfu_peak_{precision}"]["basis"].startswith(f"{kind} bf16 dense datasheet peak")
    assert peaks["mfu_peak_fp8"]["flops"] == pytest.approx(fp8 * 1e12)


def test_the_carried_wheels_are_what_the_image_lacks_at_the_tested_versions():
    rule = load_rule()
    image = rule.image_packages()
    assert {"torch", "lightning", "scipy", "jinja2", "matplotlib", "pyyaml"} <= image
    carried = rule.needed(image)
    assert {"jsonargparse", "docstring-parser", "litdata", "boto3", "botocore", "torchao"} <= set(carried)
    assert not set(carried) & image
    pins = rule.ci_pins()
    for name, version in carried.items():
        try:
            assert version == md.version(name), name  # the version this environment tests
        except md.PackageNotFoundError:
            assert version == pins[name], name  # not installed here: the one CI installs
    # closed: every need of the project and of each carried distribution is on the image or carried
    env = {"python_version": "3.12", "extra": ""}
    reqs = [Requirement(r) for r in rule.roots()]
    for name in set(carried) - set(rule.WITHOUT_NEEDS):
        try:
            reqs += [Requirement(r) for r in md.requires(name) or []]
        except md.PackageNotFoundError:  # CI's pin, not installed here
            pass
    for req in reqs:
        if req.marker is None or req.marker.evaluate(env):
            assert rule.normalize(req.name) in image | set(carried), req


def test_needs_are_followed_through_carried_distributions_only():
    rule = load_rule()
    image = rule.image_packages()
    # the image without urllib3: botocore (carried) requires it, so it travels too; without pyyaml, which
    # the project and jsonargparse require
    assert "urllib3" in rule.needed(image - {"urllib3"}) and "pyyaml" in rule.needed(image - {"pyyaml"})
    # litdata's declared needs (torchvision, obstore, tifffile) never travel: install.sh drops them too
    assert not {"obstore", "torchvision", "tifffile"} & set(rule.needed(image - {"torchvision", "tifffile"}))
    # markers: jsonargparse's typing-extensions is in an extra only
    assert "typing-extensions" not in rule.needed(image - {"typing-extensions"})


def fake_distribution(folder: Path, name: str) -> None:
    (folder / name).mkdir(parents=True)
    (folder / name / "__init__.py").write_text("WHERE = 'installed'\n")
    info = folder / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "RECORD").write_text(f"{name}/__init__.py,,\n{info.name}/METADATA,,\n")


def test_the_rule_hides_modules_and_metadata_as_if_never_installed(tmp_path):
    """A hidden distribution's module is not found (find_spec None, import error naming it and why), nor its
    metadata; the same name vendored elsewhere on the path still imports; other modules are untouched."""
    rule = load_rule()
    sites, vendor = tmp_path / "site-packages", tmp_path / "vendor"
    fake_distribution(sites, "hiddenpkg")
    fake_distribution(sites, "keptpkg")
    (vendor / "vendoredpkg").mkdir(parents=True)
    (vendor / "vendoredpkg" / "__init__.py").write_text("WHERE = 'vendored'\n")
    fake_distribution(sites, "vendoredpkg")
    paths = {str(sites / "hiddenpkg"): "hiddenpkg", str(sites / "vendoredpkg"): "vendoredpkg"}
    rule.write_site(tmp_path / "rule", paths, why="hidden by the test")
    code = """
import importlib.metadata as md, importlib.util, sys
assert importlib.util.find_spec("hiddenpkg") is None
try:
    md.version("hiddenpkg")
    raise SystemExit("metadata visible")
except md.PackageNotFoundError:
    pass
import keptpkg, vendoredpkg, json
assert md.version("keptpkg") == "1.0" and keptpkg.WHERE == "installed" and vendoredpkg.WHERE == "vendored"
import hiddenpkg
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [tmp_path / "rule", sites, vendor]))}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr
    assert p.stderr.splitlines()[-1] == ("ModuleNotFoundError: No module named 'hiddenpkg': "
                                         "hiddenpkg is hidden by the test")


def copy_of_the_tree(dst: Path) -> Path:
    root = SCRIPT.parents[1]
    top = {".git", ".venv", ".whl", "results", ".cache", ".pytest_cache", ".benchmarks", "lightning_logs"}
    shutil.copytree(root, dst, ignore=lambda d, names: [n for n in names if n == "__pycache__" or
                                                        (Path(d) == root and n in top)])
    return dst


@pytest.mark.slow
def test_the_dry_run_fails_in_one_line_on_a_package_the_image_lacks(tmp_path):
    """submitit is installed here but neither on the GPU image nor carried: imported by a module every part
    of the check imports, it fails the dry run, and the run says so in one line naming it."""
    assert md.version("submitit")  # installed: only the image rule can make the import fail
    tree = copy_of_the_tree(tmp_path / "tree")
    atomic = tree / "bench" / "atomic.py"
    atomic.write_text(atomic.read_text() + "\nimport submitit  # noqa: E402,F401\n")
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(tree)}
    p = subprocess.run(["bash", str(tree / "scripts" / "device-check.sh"), "--dry-run", str(tmp_path / "out")],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 1, p.stdout + p.stderr
    named = [line for line in p.stdout.splitlines() if "submitit" in line]
    assert named == ["error in probe, overhead, cost-71m, cost-350m: ModuleNotFoundError: No module named "
                     "'submitit': submitit is not on the GPU image (scripts/gpu-image-packages.txt) nor carried "
                     "by scripts/device-wheels.sh"], p.stdout
