"""The HTML report of `edgeseg bench` renders in a real headless Chromium with its three
inline-SVG plots (accuracy vs latency with the budget region, per-class IoU fp32 vs
deployed, latency histogram) and a non-blank screenshot.

CI needs Debian's chromium: ``apt-get update && apt-get install -y chromium``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

from edgeseg.bench.report import to_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def fake_result() -> dict:
    rng = np.random.default_rng(0)
    model = list(rng.gamma(9, 0.5, 60) + 5)
    e2e = [m + 2 + rng.random() for m in model]
    classes = ["Sky", "Building", "Pole", "Road", "Car"]

    def st(v):
        p = np.percentile(v, [50, 90, 99])
        return {"p50": p[0], "p90": p[1], "p99": p[2], "mean": float(np.mean(v)), "min": min(v), "max": max(v)}

    per = {c: float(v) for c, v in zip(classes, [0.9, 0.7, 0.2, 0.95, 0.6])}
    ref = {c: min(1.0, v + 0.03) for c, v in per.items()}
    return {
        "schema_version": 1, "artifact": "art<&>", "model": "bisenetv1", "target": "openvino-cpu", "format": "openvino",
        "runtime": "openvino", "precision": "int8", "input_size": [384, 480], "image": "synthetic",
        "method": {"model_only": "openvino InferRequest.infer()", "runs": 60, "warmup": 5, "threads": 2},
        "latency_ms": st(model), "end_to_end_ms": st(e2e), "stages_p50_ms": {"decode": 1, "pre": 1, "model": 9, "post": 1},
        "throughput_fps": {"sync": 100.0, "end_to_end": 80.0, "async": 150.0, "async_requests": 2, "async_method": "q"},
        "peak_memory_mb": 250.0, "memory": {"baseline_mb": 200.0}, "size_mb": 3.2, "size_files": ["model.xml", "model.bin"],
        "miou": float(np.mean(list(per.values()))), "per_class_iou": per, "pixel_accuracy": 0.9,
        "reference": {"available": True, "miou": float(np.mean(list(ref.values()))), "per_class_iou": ref,
                      "delta_per_class": {c: per[c] - ref[c] for c in classes}, "delta_miou": -0.03},
        "flags": [], "classes": classes,
        "machine": {"cpu": "Test CPU", "usable_cores": 2, "threads": 2, "load_average": [1.0, 1.0, 1.0]},
        "runtime_versions": {"openvino": "x"},
        "budget": {"passed": False, "limits": {"p99_ms": 14.0, "memory_mb": 500, "min_miou": 0.5, "sources": {}},
                   "violations": [{"metric": "latency p99 end-to-end", "limit": 14.0, "value": 16.0, "unit": "ms",
                                   "over_by": 2.0, "over_by_pct": 14.3}], "skipped": []},
        "samples_ms": {"model": model, "end_to_end": e2e},
    }


def test_html_is_self_contained():
    page = to_html(fake_result())
    assert page.count("<svg") == 3 and "art&lt;&amp;&gt;" in page
    assert "openvino on openvino" not in page and "</code>, openvino, input 384x480" in page
    ran = to_html({**fake_result(), "device": "CPU", "execution": {"device": "CPU", "inference_precision": "f32"},
                   "machine": {**fake_result()["machine"], "isa": "AMX"}})
    assert "Ran on: CPU, computed in f32; CPU ISA AMX." in ran
    assert not re.search(r"(src|href)=['\"]?https?:", page)  # no network needed


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_html_renders_in_headless_chromium(tmp_path):
    import cv2

    page = tmp_path / "report.html"
    page.write_text(to_html(fake_result()), encoding="utf-8")
    shot = tmp_path / "out.png"
    with tempfile.TemporaryDirectory() as profile:
        common = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1200,1600"]
        dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60)
        subprocess.run([*common, f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=60)
    html = dom.stdout
    for cls in ("accuracy-latency", "per-class-iou", "latency-histogram"):
        assert f'class="plot {cls}"' in html, cls
    assert 'class="budget-region"' in html and html.count('class="bar ') == 10
    assert html.count('class="hist ') >= 4 and 'class="point"' in html
    img = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # not blank: text, bars, shading
    blue = np.all(np.abs(img.astype(int) - [31, 119, 180]) < 30, axis=2).sum()
    assert blue > 500  # the plotted bars/points are drawn
