"""int8 that explains itself: the per-layer error ranking, `--keep-float NAME` and
`--keep-float auto`, through the real CLI, on a network built to fail int8 (tests/own_models/
outlier.py: one huge activation channel rounds the small ones away) as an ONNX file and as your
own PyTorch model."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import onnx
import pytest
import torch

from helpers import make_camvid, run_cli

OWN = Path(__file__).parent / "own_models"
sys.path.insert(0, str(OWN))
import outlier  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_camvid(tmp_path_factory.mktemp("kf_data"), n_train=4, n_val=2, size=(64, 96))


@pytest.fixture(scope="module")
def outlier_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("kf") / "outlier.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(outlier.Outlier(11).eval(), (torch.zeros(1, 3, 64, 96),), str(path), dynamo=False,
                          opset_version=17, input_names=["x"], output_names=["y"])
    return path


def _reads_float(model_file: Path, node_name: str) -> bool:
    graph = onnx.load(str(model_file)).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    node = next(n for n in graph.node if n.name == node_name)
    return not any(producer.get(i) == "DequantizeLinear" for i in node.input)


def test_plain_int8_failure_names_the_worst_layer_and_the_command(outlier_onnx, data, capsys, tmp_path):
    code, _, err = run_cli(["build", outlier_onnx, "--target", "onnxruntime-cpu", "--precision", "int8", "--data",
                            data, "--out", tmp_path / "a"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "the layers adding most int8 error: /head/Conv (Conv" in err
    assert "rebuild with --keep-float /head/Conv" in err
    assert not (tmp_path / "a").exists()


def test_keep_float_auto_keeps_the_culprit_and_passes(outlier_onnx, data, capsys, tmp_path):
    code, out, err = run_cli(["build", outlier_onnx, "--target", "onnxruntime-cpu", "--precision", "int8", "--data",
                              data, "--out", tmp_path / "a", "--keep-float", "auto"], capsys)
    assert code == 0, err
    assert "kept in float: /head/Conv" in out
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["parity"]["passed"] and m["quantization"]["kept_in_float"] == ["/head/Conv"]
    ranking = m["quantization"]["layer_error"]["ranking"]
    assert ranking[0]["node"] == "/head/Conv" and ranking[0]["drop_db"] > 20
    assert _reads_float(tmp_path / "a" / "model_int8.onnx", "/head/Conv")
    assert not _reads_float(tmp_path / "a" / "model_int8.onnx", "/stem/Conv")  # the rest stays int8


def test_keep_float_by_name_for_jetson_and_on_your_own_pytorch_model(outlier_onnx, data, capsys, tmp_path):
    code, _, err = run_cli(["build", outlier_onnx, "--target", "jetson", "--precision", "int8", "--data", data,
                            "--out", tmp_path / "j", "--keep-float", "/head/Conv"], capsys)
    assert code == 0, err
    m = json.loads((tmp_path / "j" / "manifest.json").read_text())
    assert m["parity"]["passed"] and m["quantization"]["kept_in_float"] == ["/head/Conv"]
    assert _reads_float(tmp_path / "j" / "model_int8.onnx", "/head/Conv")
    # the same network as your own PyTorch code (a step at a negligible rate keeps its weights)
    spec = f"{OWN / 'outlier.py'}:Outlier"
    code, _, err = run_cli(["train", "--model", spec, "--data", data, "--out", tmp_path / "run", "--epochs", "1",
                            "--steps-per-epoch", "1", "--batch-size", "2", "--workers", "0", "--no-progress",
                            "--img-size", "64x96", "--lr", "1e-9", "--size-divisor", "1"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["build", tmp_path / "run" / "last.pt", "--model-code", spec, "--target",
                              "onnxruntime-cpu", "--precision", "int8", "--data", data, "--out", tmp_path / "own",
                              "--keep-float", "auto"], capsys)
    assert code == 0, err
    assert "kept in float: /net/head/Conv" in out


@pytest.mark.parametrize("args, needle", [
    (["--target", "onnxruntime-cpu", "--precision", "fp32", "--keep-float", "auto"], "use it with --precision int8"),
    (["--target", "openvino-cpu", "--precision", "int8", "--keep-float", "auto"], "not available for target"),
    (["--target", "onnxruntime-cpu", "--precision", "int8", "--keep-float", "/no/Such"], "has no node '/no/Such'"),
    (["--target", "onnxruntime-cpu", "--precision", "int8", "--keep-float", "auto", "--max-float-layers", "0"],
     "--max-float-layers must be at least 1"),
])
def test_keep_float_misuse_is_one_line(outlier_onnx, data, capsys, tmp_path, args, needle):
    code, _, err = run_cli(["build", outlier_onnx, "--data", data, "--out", tmp_path / "a", *args], capsys)
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "a").exists()


def test_reduce_range_auto_follows_the_cpu(monkeypatch):
    """onnxruntime-cpu's `reduce_range: auto`: 7-bit weights on x86 without VNNI (where the int8
    kernels saturate), full 8-bit elsewhere; a profile can force either."""
    import platform

    import edgeseg.machine as machine
    from edgeseg.formats.onnx import reduce_range_here

    real = machine.cpu_isa()
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(machine, "cpu_isa", lambda *a: {**real, "int8_dot": False})
    assert reduce_range_here("auto") is True
    monkeypatch.setattr(machine, "cpu_isa", lambda *a: {**real, "int8_dot": True})
    assert reduce_range_here("auto") is False
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(machine, "cpu_isa", lambda *a: {**real, "int8_dot": False})
    assert reduce_range_here("auto") is False
    assert reduce_range_here(True) is True and reduce_range_here(False) is False
