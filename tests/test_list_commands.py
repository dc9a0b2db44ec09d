"""List commands piped or as JSON: complete rows (no cell cut to a terminal's width, no
"[extra]" eaten as markup) and machine-readable output with --json."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from edgeseg.targets import list_targets
from edgeseg.zoo import list_zoo

from helpers import make_camvid, tiny_checkpoint, under_a_terminal

LISTS = {
    "models": ["models", "deeplab*"],
    "zoo list": ["zoo", "list"],
    "targets": ["targets"],
    "recipes": ["recipes"],
    "data list": ["data", "list"],
}


def _run(args):
    # through a real pipe: stdout is not a terminal, as in `edgeseg models | grep ...`
    p = subprocess.run([sys.executable, "-m", "edgeseg", *args], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


@pytest.mark.parametrize("name", list(LISTS))
def test_piped_list_has_complete_rows_and_json_has_the_same(name):
    piped = _run(LISTS[name]).splitlines()
    header, rows = piped[0].split("\t"), [line.split("\t") for line in piped[1:]]
    assert all(len(r) == len(header) for r in rows) and not any("…" in c for r in rows for c in r)
    records = json.loads(_run([*LISTS[name], "--json"]))
    assert [list(r) for r in records] == [header] * len(records)
    assert [r[0] for r in rows] == [str(rec[header[0]]) for rec in records]
    if name == "models":
        assert "deeplabv3plus_mobilenetv2" in [r[0] for r in rows]
    if name == "zoo list":
        assert [r[0] for r in rows] == list_zoo() and sum(rec["default"] for rec in records) == 1
    if name == "targets":
        assert [r[0] for r in rows] == list_targets()
        # a reason that names an extra keeps its brackets
        assert all("pip install 'edgeseg'" not in c for r in rows for c in r)
    if name == "data list":  # an archive without a checksum says it is not verified, not "-"
        by_name = {rec["name"]: rec for rec in records}
        assert by_name["camvid"]["checksum"].startswith("none: not verified")
        assert by_name["voc2012"]["checksum"].startswith("md5:")


def test_native_logs_are_captured_unless_verbose():
    code = ("import os\n"
            "from edgeseg.native_logs import captured\n"
            "with captured() as log:\n"
            "    os.write(2, b'I0000 native noise\\n')\n"
            "print(repr(log['text']))\n")
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert quiet.stderr == "" and "native noise" in quiet.stdout
    loud = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "EDGESEG_VERBOSE": "1"})
    assert "native noise" in loud.stderr and loud.stdout.strip() == "''"


@pytest.mark.slow
def test_coral_build_keeps_the_converters_logs_off_the_terminal(tmp_path):
    pytest.importorskip("litert_torch")
    data = make_camvid(tmp_path / "camvid", 2, 2, (64, 96))
    tiny_checkpoint(tmp_path / "t.pt")
    p = subprocess.run([sys.executable, "-m", "edgeseg", "build", str(tmp_path / "t.pt"), "--target", "coral",
                        "--data", str(data), "--calib-images", "2", "--parity-images", "2", "--allow-drop",
                        "--out", str(tmp_path / "a")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    # absl / MLIR / TFLite / torchao lines would start like these
    noisy = [ln for ln in p.stderr.splitlines() if ln.startswith(("I0000", "W0000", "WARNING: All log", "INFO:",
                                                                    "Failed to load"))]
    assert noisy == [], noisy


@pytest.mark.slow
def test_long_commands_show_a_progress_bar_on_a_terminal_and_none_when_quiet(tmp_path):
    data = make_camvid(tmp_path / "camvid", 2, 24, (64, 96))
    ckpt = tiny_checkpoint(tmp_path / "t.pt")
    images = [str(p) for p in sorted((data / "val").iterdir())]
    commands = {"eval": ["eval", str(ckpt), "--data", str(data), "--batch-size", "1"],
                "predict": ["predict", str(ckpt), *images, "--out", str(tmp_path / "p")],
                "build (parity)": ["build", str(ckpt), "--target", "onnxruntime-cpu", "--data", str(data),
                                   "--parity-images", "24", "--out", str(tmp_path / "a")],
                "bench (accuracy)": ["bench", str(tmp_path / "a"), "--data", str(data), "--runs", "2",
                                     "--warmup", "0", "--memory-runs", "0"]}
    bars = {"eval": "eval val", "predict": "predict", "build (parity)": "parity: onnxruntime",
            "bench (accuracy)": "accuracy: onnxruntime"}
    for name, args in commands.items():
        code, seen = under_a_terminal(args, tmp_path)
        assert code == 0, (name, seen[-2000:])
        assert re.search(re.escape(bars[name]) + r" .*━.* \d+/24", seen), (name, seen[-3000:])  # bar and count
    # build's int8 calibration (NNCF's own bar is captured with its logs; ours counts the images)
    code, seen = under_a_terminal(["build", str(ckpt), "--target", "openvino-cpu", "--precision", "int8", "--data",
                                   str(data), "--parity-images", "2", "--allow-drop", "--out", str(tmp_path / "q")], tmp_path)
    assert code == 0, seen[-2000:]
    assert re.search(r"calibration \(nncf\.quantize\) .*━.*\d/2", seen), seen[-3000:]
    code, seen = under_a_terminal(["models", "*", "--img-size", "64x64"], tmp_path)  # model listing
    assert code == 0 and re.search(r"measuring models .*━.*\d+/\d+", seen), seen[-3000:]
    code, seen = under_a_terminal(["--quiet", *commands["eval"]], tmp_path)
    assert code == 0 and "eval val" not in seen and "mIoU" in seen
