"""Edge TPU compatibility check: accepts a small full-int8 conv/relu/pool/concat model,
rejects a float model and flags a too-large resize, naming the op and its layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from test_tflite import SIZE, TinySeg, build  # noqa: E402

from edgeseg.formats.litert import edgetpu  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinySeg().eval()


@pytest.fixture(scope="module")
def int8_tflite(tiny, tmp_path_factory):
    calib = [np.random.default_rng(i).standard_normal((1, 3, *SIZE)).astype(np.float32) for i in range(2)]
    out = tmp_path_factory.mktemp("tiny_int8")
    build(tiny, calib, out, low_res_output=False)  # keep the final RESIZE_BILINEAR in the file
    return out / "model_int8.tflite"


def test_accepts_full_int8_model(int8_tflite):
    report = edgetpu.check_edgetpu(int8_tflite)
    assert report["ok"], report["summary"]
    assert report["full_integer"] and report["first_unmapped"] is None
    assert report["ops_on_cpu"] == 0 and report["ops_on_tpu"] == report["num_ops"]
    assert {"CONV_2D", "MAX_POOL_2D", "CONCATENATION", "RESIZE_BILINEAR"} <= set(report["ops"])


def test_rejects_float_model(tiny, tmp_path):
    import litert_torch

    path = tmp_path / "float.tflite"
    x = torch.zeros(1, *SIZE, 3)
    litert_torch.convert(litert_torch.to_channel_last_io(tiny, args=[0], outputs=[0]), (x,)).export(str(path))
    report = edgetpu.check_edgetpu(path)
    assert not report["ok"] and not report["full_integer"]
    first = report["first_unmapped"]
    assert first["index"] == 0 and first["op"] == "CONV_2D" and "R2 full integer" in first["rules"]
    assert "stem" in first["layer"] and "FLOAT32" in first["reasons"][0]
    assert report["ops_on_tpu"] == 0 and "run on the CPU" in report["summary"]


def test_flags_resize_above_limit(int8_tflite):
    report = edgetpu.check_edgetpu(int8_tflite, max_resize=64)  # the 64x96 output upsample
    first = report["first_unmapped"]
    assert not report["ok"] and first["op"] == "RESIZE_BILINEAR" and first["severity"] == "warning"
    assert first["index"] == report["num_ops"] - 1 and report["ops_on_cpu"] == 1
    assert "64x96" in first["reasons"][0]
    assert edgetpu.check_edgetpu(int8_tflite, max_resize=64, strict_heuristics=False)["ok"]


def test_compiler_absent_gives_command(int8_tflite, tmp_path, monkeypatch):
    monkeypatch.setattr(edgetpu.shutil, "which", lambda name: None)
    res = edgetpu.run_compiler(int8_tflite, tmp_path)
    assert res["ran"] is False and "not on PATH" in res["reason"]
    assert res["command"].startswith("edgetpu_compiler -s -o ") and res["command"].endswith("model_int8.tflite")


# The layout of `edgetpu_compiler -s` output (summary lines, then the operator table),
# written for this test; the numbers are illustrative.
SAMPLE = """Edge TPU Compiler version 16.0.384591198
Model compiled successfully in 352 ms.

Input model: model_int8.tflite
Output model: model_int8_edgetpu.tflite
Number of Edge TPU subgraphs: 1
Total number of operations: 9
Number of operations that will run on Edge TPU: 8
Number of operations that will run on CPU: 1

Operator                       Count      Status

CONV_2D                        3          Mapped to Edge TPU
MAX_POOL_2D                    1          Mapped to Edge TPU
CONCATENATION                  1          Mapped to Edge TPU
QUANTIZE                       3          Mapped to Edge TPU
ARG_MAX                        1          Operation not supported
"""


def test_parse_compiler_report():
    rep = edgetpu.parse_compiler_report(SAMPLE)
    assert rep["ops_on_tpu"] == 8 and rep["ops_on_cpu"] == 1 and rep["subgraphs"] == 1
    assert rep["mapped_ops"] == 8 and not rep["all_mapped"]
    assert rep["unmapped"] == [{"operator": "ARG_MAX", "count": 1, "status": "Operation not supported"}]


def test_compiler_runs_in_artifact_folder_with_relative_paths(int8_tflite, tmp_path, monkeypatch):
    # A stand-in edgetpu_compiler on PATH: prints the report layout and writes the output model
    # into its -o folder, so the command, working folder and parsed report are checked for real.
    art = tmp_path / "artifact"
    art.mkdir()
    (art / "model_int8.tflite").write_bytes(int8_tflite.read_bytes())
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (tmp_path / "report.txt").write_text(SAMPLE)
    exe = bindir / "edgetpu_compiler"
    exe.write_text(f'#!/bin/sh\n# args: -s -o OUT MODEL\nmkdir -p "$3"\ncp "$4" "$3/model_int8_edgetpu.tflite"\n'
                   f'cat {tmp_path / "report.txt"}\n')
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{__import__('os').environ['PATH']}")
    res = edgetpu.run_compiler(art / "model_int8.tflite", art / "edgetpu", cwd=art)
    assert res["ran"] and res["returncode"] == 0, res
    assert res["command"] == "edgetpu_compiler -s -o edgetpu model_int8.tflite"
    assert res["output_model"] == "edgetpu/model_int8_edgetpu.tflite"
    assert (art / res["output_model"]).is_file()
    assert res["report"]["ops_on_tpu"] == 8 and res["cwd"] == "the artifact folder"
