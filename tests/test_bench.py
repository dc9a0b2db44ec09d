"""edgeseg bench: an onnxruntime-cpu artifact of a tiny U-Net (64x96) on tiny generated
CamVid data, few runs: JSON keys, ordered percentiles, end to end >= model only, memory of
a fresh process, size, the budget gate both ways (exit 0 / exit 3), bad inputs, a
single-class model flagged, and the matrix (onnxruntime-cpu, openvino-cpu, coral)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgeseg.bench import bench_artifact
from edgeseg.bench.matrix import plan
from edgeseg.build import build
from edgeseg.cli.main import main
from edgeseg.data.info import CAMVID
from edgeseg.models import create_model
from edgeseg.train.checkpoint import make_checkpoint, save_checkpoint

from helpers import make_camvid, under_a_terminal

KEYS = {"schema_version", "latency_ms", "end_to_end_ms", "throughput_fps", "peak_memory_mb", "size_mb", "miou",
        "per_class_iou", "pixel_accuracy", "reference", "flags", "machine", "runtime_versions", "budget"}
FAST = ["--runs", "8", "--warmup", "2", "--threads", "1", "--memory-runs", "1"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    data = make_camvid(root / "camvid", 4, 3, (64, 96))
    torch.manual_seed(0)
    ckpt = root / "unet.pt"
    save_checkpoint(make_checkpoint(create_model("unet", 11, base_channels=8), CAMVID, (64, 96)), ckpt)
    art = build(ckpt, "onnxruntime-cpu", out=root / "art")
    return root, data, ckpt, art


@pytest.fixture(scope="module")
def result(work, tmp_path_factory):
    root, data, ckpt, art = work
    out = root / "r.json"
    assert main(["bench", str(art), "--data", str(data), "--json", str(out), "--md", str(root / "r.md"), *FAST]) == 0
    return json.loads(out.read_text())


def test_json_keys_and_numbers(work, result):
    root, data, ckpt, art = work
    r = result
    assert KEYS <= set(r) and r["schema_version"] == 1
    for key in ("latency_ms", "end_to_end_ms"):
        s = r[key]
        assert {"p50", "p90", "p99", "mean", "min", "max"} <= set(s)
        assert s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
        assert s["min"] <= s["mean"] <= s["max"]
    assert r["end_to_end_ms"]["p50"] >= r["latency_ms"]["p50"]
    assert r["end_to_end_ms"]["min"] >= r["latency_ms"]["min"]
    assert r["throughput_fps"]["sync"] > 0 and r["throughput_fps"]["async"] > 0  # ORT: parallel threads
    assert r["peak_memory_mb"] > 0 and r["memory"]["source"] in ("VmHWM", "ru_maxrss")
    assert r["peak_memory_mb"] >= r["memory"]["baseline_mb"]
    manifest = json.loads((art / "manifest.json").read_text())
    assert r["size_mb"] == pytest.approx((art / manifest["files"]["model"]).stat().st_size / 1e6)
    assert 0 <= r["miou"] <= 1 and 0 <= r["pixel_accuracy"] <= 1
    assert list(r["per_class_iou"]) == list(CAMVID.classes)
    ref = r["reference"]
    assert ref["available"] and set(ref["delta_per_class"]) == set(CAMVID.classes)
    assert ref["miou"] == pytest.approx(r["miou"], abs=1e-3)  # fp32 ONNX == PyTorch fp32
    assert r["machine"]["cpu"] and r["machine"]["logical_cores"] >= 1 and r["machine"]["threads"] == 1
    assert "onnxruntime" in r["runtime_versions"]
    assert r["budget"]["passed"] and r["budget"]["violations"] == []
    assert r["budget"]["limits"]["sources"]["p99_ms"] == "target profile 'onnxruntime-cpu'"
    assert r["flags"] == []
    assert "| model only |" in (root / "r.md").read_text()


def test_budget_generous_passes_and_tiny_fails(work, capsys):
    root, data, ckpt, art = work
    assert main(["bench", str(art), "--budget-p99-ms", "100000", "--budget-memory-mb", "100000", *FAST]) == 0
    capsys.readouterr()
    out = root / "fail.json"
    assert main(["bench", str(art), "--budget-p99-ms", "0.0001", "--json", str(out), *FAST]) == 3
    text = capsys.readouterr().out
    assert "budget FAILED" in text and "latency p99" in text
    v = json.loads(out.read_text())["budget"]
    assert not v["passed"] and v["violations"][0]["metric"] == "latency p99 end-to-end"
    assert v["violations"][0]["limit"] == 0.0001 and v["violations"][0]["over_by"] > 0


@pytest.mark.parametrize("args, words", [
    (["{root}/nothing-here"], "neither an artifact folder"),
    (["{root}"], "no manifest.json"),
    (["{art}", "--budget-p99-ms", "0"], "positive"),
    (["{art}", "--budget-memory-mb", "-5"], "positive"),
    (["{art}", "--min-miou", "1.5"], "at most"),
    (["{art}", "--min-miou", "0.5"], "needs --data"),
    (["{art}", "--data", "{other}"], "classes"),
    (["onnxruntime-cpu"], "--model"),
])
def test_bad_inputs_one_line(work, capsys, args, words, monkeypatch):
    root, data, ckpt, art = work
    other = root / "other"
    if not other.exists():
        make_camvid(other, 1, 1, (64, 96))
    import edgeseg.zoo as zoo

    monkeypatch.setattr(zoo, "read_cards", lambda zoo_dir=None: {})  # an empty zoo
    args = [a.format(root=root, art=art, other=other) for a in args]
    if str(other) in args:  # the artifact says it was built for another label set than CamVid's
        import edgeseg.formats as base

        orig = base.read_manifest
        monkeypatch.setattr(base, "read_manifest",
                            lambda d: {**orig(d), "classes": ["a", "b"]} if Path(d) == art else orig(d))
    code = main(["bench", *args, "--runs", "1", "--warmup", "0", "--memory-runs", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0], err


def test_single_class_model_is_flagged(work, tmp_path, capsys):
    root, data, ckpt, art = work
    torch.manual_seed(0)
    model = create_model("unet", 11, base_channels=8)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == 11][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[3] = 5.0  # road everywhere
    c = tmp_path / "const.pt"
    save_checkpoint(make_checkpoint(model, CAMVID, (64, 96)), c)
    a = build(c, "onnxruntime-cpu", out=tmp_path / "const")
    r = bench_artifact(a, data=data, runs=3, warmup=1, threads=1, memory_runs=0)
    assert any("single-class" in f and "Road" in f for f in r["flags"]), r["flags"]
    assert not r["budget"]["passed"] and r["budget"]["violations"][-1]["metric"] == "output check"
    assert main(["bench", str(a), "--data", str(data), *FAST]) == 3
    assert "FLAG: single-class" in capsys.readouterr().out


@pytest.mark.slow
def test_matrix_plan_and_run(work, tmp_path, capsys):
    from edgeseg.formats.openvino.runtime import cpu_supports_bf16
    from edgeseg.targets import load_target, runtime_available

    root, data, ckpt, art = work
    rows = plan(None, None, None)
    by = {(r["target"], r["precision"]): r for r in rows}
    assert by[("onnxruntime-cpu", "fp32")]["runnable"] and by[("openvino-cpu", "fp32")]["runnable"]
    assert not by[("coral", "int8")]["runnable"] and "--data" in by[("coral", "int8")]["why"]
    # runnable exactly where TensorRT and a GPU are (never assumed absent)
    assert by[("jetson", "fp16")]["runnable"] == runtime_available(load_target("jetson"))[0]
    # bf16 rows: runnable exactly where the CPU has bf16
    assert by[("openvino-cpu", "bf16")]["runnable"] == cpu_supports_bf16()
    assert [(r["target"], r["precision"]) for r in plan(["openvino-cpu:fp32+int8"], None, data)] == \
        [("openvino-cpu", "fp32"), ("openvino-cpu", "int8")]
    out = tmp_path / "m.json"
    code = main(["bench", "--matrix", "--model", str(ckpt), "--data", str(data),
                 "--targets", "onnxruntime-cpu:fp32,openvino-cpu:fp32,coral",
                 "--budget-p99-ms", "100000", "--budget-memory-mb", "100000",
                 "--runs", "3", "--warmup", "1", "--threads", "1", "--memory-runs", "1", "--json", str(out)])
    text = capsys.readouterr().out
    assert "| target | format | precision | size MB | mIoU | change vs fp32 | p50 ms | p99 ms | FPS | peak MB | budget |" in text
    m = json.loads(out.read_text())["matrix"]
    done = {(r["target"], r["precision"]) for r in m if r.get("result")}
    assert {("onnxruntime-cpu", "fp32"), ("openvino-cpu", "fp32"), ("coral", "int8")} <= done, \
        [(r["target"], r["precision"], r["budget"]) for r in m]
    fp32 = next(r for r in m if r["target"] == "onnxruntime-cpu" and r["precision"] == "fp32")
    assert fp32["change vs fp32"] in ("+0.0000", "-0.0000")
    assert code in (0, 3)  # untrained int8 may be flagged single-class: the gate says so


def test_crf_scoring(work, tmp_path, capsys):
    root, data, ckpt, art = work
    out = tmp_path / "crf.json"
    assert main(["bench", str(art), "--data", str(data), "--crf", "--json", str(out), *FAST]) == 0
    r = json.loads(out.read_text())
    assert r["accuracy"]["crf"] is True and r["accuracy"]["crf_ms_per_image"] > 0
    assert 0 <= r["miou"] <= 1
    assert main(["bench", str(art), "--crf", *FAST]) == 2
    assert "--data" in capsys.readouterr().err


def test_latency_phases_show_progress_bars_on_a_terminal_and_the_next_commands(work, tmp_path):
    import re

    root, data, ckpt, art = work
    code, seen = under_a_terminal(["bench", str(art), "--runs", "40", "--warmup", "5", "--threads", "1",
                                    "--memory-runs", "0"], tmp_path)
    assert code == 0, seen[-3000:]
    seen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen)  # colours and cursor moves
    for bar, n in (("latency: warm-up", 5), ("latency: model only", 40), ("latency: end to end", 45)):
        assert re.search(re.escape(bar) + rf" ━+ \d+/{n}", seen), (bar, seen[-3000:])
    assert f"next: edgeseg demo --artifact {art} --source 0" in seen
    assert f"edgeseg bench {art} --data DIR --html report.html" in seen


def test_next_steps_go_to_stderr(work, capsys):
    root, data, ckpt, art = work
    assert main(["bench", str(art), "--html", str(root / "r.html"), "--budget-p99-ms", "100000", *FAST]) == 0
    out, err = capsys.readouterr()
    assert "next:" not in out and "wrote" in out
    assert f"next: edgeseg demo --artifact {art} --source 0" in err
    assert "edgeseg bench --matrix --data DIR" in err
