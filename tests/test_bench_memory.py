"""bench's peak memory is the deployed runtime's: a fresh process running the plain runner
(numpy and the runtime only) on tiny ONNX Runtime and OpenVINO artifacts. The process itself
reports what it imported (no torch, no edgeseg); its peak is within 10% of a plain runtime
process written apart from edgeseg (tools/bench_vendor.py's PLAIN) doing the same work; the
budget gate judges that figure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import tiny_checkpoint

from edgeseg.bench.memory import measure_peak_memory
from edgeseg.build import build
from edgeseg.cli.main import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import bench_vendor  # noqa: E402

H, W = 64, 96


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    root = tmp_path_factory.mktemp("memory")
    ckpt = tiny_checkpoint(root / "t.pt", (H, W))
    return {t: build(ckpt, t, out=root / t, parity_images=2) for t in ("onnxruntime-cpu", "openvino-cpu")}


@pytest.mark.parametrize("target, runtime", [("onnxruntime-cpu", "onnxruntime"), ("openvino-cpu", "openvino")])
def test_the_measuring_process_runs_the_plain_runtime_only(arts, target, runtime):
    m = measure_peak_memory(arts[target], runs=2, threads=1)
    imported = set(m["imported"])  # sys.modules of the measuring process, as it reported them
    assert {"numpy", runtime} <= imported
    assert "torch" not in imported and "edgeseg" not in imported, sorted(imported)
    assert m["process"].startswith("plain runner") and m["peak_mb"] >= m["baseline_mb"] > 0


@pytest.mark.parametrize("target", ["onnxruntime-cpu", "openvino-cpu"])
def test_the_peak_is_a_plain_runtime_process_maxrss(arts, target):
    ours = measure_peak_memory(arts[target], runs=5, threads=1)["peak_mb"]
    plain = bench_vendor.plain_process(arts[target], 5, 1)["maxrss_mb"]
    assert abs(ours - plain) <= 0.10 * plain, (ours, plain)


def test_the_memory_budget_judges_the_plain_figure(arts, tmp_path):
    art = arts["onnxruntime-cpu"]
    peak = measure_peak_memory(art, runs=1, threads=1)["peak_mb"]
    fast = ["--runs", "2", "--warmup", "0", "--threads", "1", "--memory-runs", "1"]
    # edgeseg's own process (torch imported) holds far more than this limit; the plain runtime does not
    assert main(["bench", str(art), "--budget-memory-mb", str(round(peak * 1.5)), *fast,
                 "--json", str(tmp_path / "r.json")]) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["peak_memory_mb"] < peak * 1.5 and r["memory"]["process"].startswith("plain runner")
    assert main(["bench", str(art), "--budget-memory-mb", str(round(peak * 0.5)), *fast]) == 3
