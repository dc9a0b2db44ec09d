"""The HTML report of `edgeseg bench` renders in a real headless Chromium with its three
inline-SVG plots (accuracy vs latency with the budget region, per-class IoU fp32 vs
deployed, latency histogram) and a non-blank screenshot; as Chromium lays the plots out,
no two text boxes overlap and none reaches outside its svg (tools/report_layout.py).

CI needs Debian's chromium: ``apt-get update && apt-get install -y chromium``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgeseg.bench.report import timing_note, to_html, to_markdown

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import report_layout  # noqa: E402

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


def _stats(v):
    p = np.percentile(v, [50, 90, 99])
    return {"p50": p[0], "p90": p[1], "p99": p[2], "mean": float(np.mean(v)), "min": min(v), "max": max(v)}


def under_load(model_p50=138.5, e2e_p50=128.9, miou=0.618, seed=1) -> dict:
    """The report of issue 20: on a loaded machine end to end came out below model only, and
    the int8 mIoU sits just under the fp32 reference's 0.623 with no p99 budget."""
    rng = np.random.default_rng(seed)
    model, e2e = list(rng.normal(model_p50, 6, 100)), list(rng.normal(e2e_p50, 6, 100))
    r = fake_result()
    r.update(latency_ms=_stats(model), end_to_end_ms=_stats(e2e), samples_ms={"model": model, "end_to_end": e2e},
             miou=miou)
    r["reference"]["miou"] = 0.623
    r["budget"]["limits"]["p99_ms"] = None
    return r


def clustered_matrix() -> list[dict]:
    """Five matrix entries whose points crowd around the reference line, one with Cityscapes'
    19 class names (the per-class axis labels reach into the margins)."""
    rows = []
    for t, p, miou, p99 in [("openvino-cpu", "int8", 0.618, 150), ("openvino-cpu", "fp32", 0.623, 260),
                            ("onnxruntime-cpu", "int8", 0.616, 160), ("onnxruntime-cpu", "fp32", 0.623, 255),
                            ("coral", "int8", 0.60, 158)]:
        r = under_load(138.5, 138.9, miou)  # end-to-end and model-only p50 0.4 ms apart
        r.update(target=t, precision=p)
        r["end_to_end_ms"]["p99"] = p99
        rows.append({"target": t, "precision": p, "result": r})
    names = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
             "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    r0 = rows[0]["result"]
    r0["per_class_iou"] = {c: 0.3 + 0.03 * i for i, c in enumerate(names)}
    r0["reference"]["per_class_iou"] = {c: v + 0.02 for c, v in r0["per_class_iou"].items()}
    return rows


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_plot_labels_do_not_overlap_and_stay_inside_in_chromium():
    rows = clustered_matrix()
    for page in (to_html(under_load()), to_html(rows[0]["result"], rows)):
        layout = report_layout.text_boxes(page)
        texts = {p["plot"].split()[-1]: [t["text"] for t in p["texts"]] for p in layout}
        # the labels the issue saw collide are all drawn (the check cannot pass on missing text)
        assert "fp32 PyTorch 0.623" in texts["accuracy-latency"], texts
        assert texts["latency-histogram"].count("p50") == 2 and texts["latency-histogram"].count("p99") == 2
        assert report_layout.problems(layout) == []
    assert {f"{r['target']} {r['precision']}" for r in rows} <= set(texts["accuracy-latency"])
    assert "traffic light" in texts["per-class-iou"]


def test_end_to_end_below_model_only_is_explained_in_every_report(capsys):
    from edgeseg.cli.bench import _print_result

    r = under_load()  # model-only p50 ~138.5 ms, end to end ~128.9 ms
    note = timing_note(r)
    assert note.startswith(f"end-to-end p50 {r['end_to_end_ms']['p50']:.1f} ms is below model-only p50 "
                           f"{r['latency_ms']['p50']:.1f} ms") and "separate runs" in note and "--threads" in note
    assert "\n" not in note
    assert f"**Note:** {note}." in to_markdown(r)
    assert "separate runs" in to_html(r)
    _print_result(r)
    assert f"note: {note}" in capsys.readouterr().out.splitlines()
    steady = fake_result()  # end to end 2-3 ms above model only: nothing to explain
    assert timing_note(steady) is None and "separate runs" not in to_markdown(steady) + to_html(steady)
    _print_result(steady)
    assert "note:" not in capsys.readouterr().out
