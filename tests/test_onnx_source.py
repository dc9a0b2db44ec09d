"""A finished ONNX model as a source (``edgeseg build model.onnx``): exported here from the
test models in tests/own_models/ (dynamic axes, a tuple of outputs, B,G,R 0..255 input), run
through the real CLI; the fp32 reference is the file itself in ONNX Runtime."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from helpers import make_camvid, run_cli

sys.path.insert(0, str(Path(__file__).parent / "own_models"))
import aux_heads  # noqa: E402
import bgr255  # noqa: E402
import dict_output  # noqa: E402


def export(model, path, *, inputs=("image",), outputs=("out",), dynamic=False, args=None):
    x = args if args is not None else (torch.zeros(1, 3, 64, 96),)
    axes = {inputs[0]: {0: "n", 2: "h", 3: "w"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), x, str(path), dynamo=False, opset_version=17, input_names=list(inputs),
                          output_names=list(outputs), dynamic_axes=axes)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_camvid(tmp_path_factory.mktemp("onnx_data"), n_train=4, n_val=2, size=(64, 96))


@pytest.fixture(scope="module")
def dict_onnx(tmp_path_factory):
    """A dict-output model with dynamic height and width (its outputs: out, aux)."""
    torch.manual_seed(0)
    return export(dict_output.DictNet(11), tmp_path_factory.mktemp("onnx") / "dictnet.onnx", dynamic=True,
                  outputs=("out", "aux"))


def test_dynamic_onnx_builds_for_every_onnx_target_with_parity_against_itself(dict_onnx, data, capsys, tmp_path):
    for target, precision in (("onnxruntime-cpu", "fp32"), ("openvino-cpu", "fp32"), ("ncnn-cpu", "fp32"),
                              ("jetson", "fp16"), ("openvino-cpu", "int8"), ("onnxruntime-cpu", "int8")):
        art = tmp_path / f"{target}-{precision}"
        # int8 of an untrained network may lose more than the gate allows: kept to check it ran
        extra = ["--allow-drop"] if precision == "int8" else []
        code, out, err = run_cli(["build", dict_onnx, "--target", target, "--precision", precision, "--data", data,
                                  "--img-size", "64x96", "--out", art, *extra], capsys)
        assert code == 0, (target, precision, err)
        m = json.loads((art / "manifest.json").read_text())
        assert m["parity"]["ran"] and m["parity"]["reference"] == "onnxruntime fp32, the source ONNX file"
        assert m["model"]["name"] == "onnx:dictnet.onnx" and m["model"]["kwargs"]["output"] == "out"
        assert m["source"]["sha256"] == m["model"]["kwargs"]["file_sha256"]
        if precision != "int8":
            assert m["parity"]["passed"] and m["parity"]["agreement"] > 0.999, (target, m["parity"])
        else:
            assert m["quantization"], target
    code, out, err = run_cli(["eval", dict_onnx, "--data", data], capsys)
    assert code == 0 and "mIoU" in out, err
    code, _, err = run_cli(["build", dict_onnx, "--target", "coral", "--data", data, "--out", tmp_path / "c"], capsys)
    assert code == 2 and "converts from PyTorch only" in err and not (tmp_path / "c").exists()


def test_static_onnx_with_three_outputs_takes_the_one_named(data, capsys, tmp_path):
    path = export(aux_heads.AuxNet(11), tmp_path / "aux.onnx", inputs=("x",), outputs=("main", "aux", "edge"))
    code, _, err = run_cli(["build", path, "--target", "openvino-cpu", "--data", data, "--output", "main",
                            "--out", tmp_path / "a"], capsys)
    assert code == 0, err
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["parity"]["passed"] and m["input"]["size"] == [64, 96]  # its fixed size
    assert m["output"]["size"] == [64, 96]  # 1/8-resolution logits resized to the input in the graph
    code, _, err = run_cli(["build", path, "--target", "openvino-cpu", "--data", data, "--output", "edge",
                            "--out", tmp_path / "b"], capsys)
    assert code == 2 and "gives 1 output channels but 11 classes" in err and not (tmp_path / "b").exists()
    code, _, err = run_cli(["build", path, "--target", "openvino-cpu", "--img-size", "128x128", "--out",
                            tmp_path / "c"], capsys)
    assert code == 2 and "fixed input of 64x96" in err


def test_bgr_0_255_onnx_sees_what_it_expects(data, capsys, tmp_path):
    torch.manual_seed(0)
    path = export(bgr255.make(11), tmp_path / "bgr.onnx")
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps([f"c{i}" for i in range(11)]))
    image = sorted((data / "val").glob("*.png"))[0]
    code, _, err = run_cli(["predict", path, image, "--bgr", "--input-range", "255", "--classes", classes,
                            "--out", tmp_path / "pred"], capsys)
    assert code == 0, err
    ours = cv2.imread(str(tmp_path / "pred" / f"{image.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
    import onnxruntime as ort

    bgr = cv2.imread(str(image)).astype(np.float32).transpose(2, 0, 1)[None]
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": bgr})[0]
    y = torch.nn.functional.interpolate(torch.from_numpy(y), size=bgr.shape[2:], mode="bilinear",
                                        align_corners=False)
    assert (y.argmax(1)[0].numpy() == ours).mean() > 0.999


def _two_inputs(path):
    class Two(torch.nn.Module):
        def forward(self, a, b):
            return a + b
    return export(Two(), path, inputs=("a", "b"), args=(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)))


def _five_d(path):
    class FiveD(torch.nn.Module):
        def forward(self, x):
            return x.unsqueeze(2)
    return export(FiveD(), path, args=(torch.zeros(1, 3, 8, 8),))


def _int64_input(path):
    node = helper.make_node("Cast", ["image"], ["out"], to=TensorProto.FLOAT)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("image", TensorProto.INT64, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 8, 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _external_data(path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("float_data")
    entry = w.external_data.add()
    entry.key, entry.value = "location", "../../../etc/passwd"
    node = helper.make_node("Mul", ["image", "w"], ["out"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 8, 8])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _not_onnx(path):
    path.write_bytes(b"\x00\x01 this is a JPEG, honest" * 10)
    return path


@pytest.mark.parametrize("make, needle", [
    (_two_inputs, "has 2 inputs"),
    (_five_d, "5-D"),
    (_int64_input, "takes int64 input"),
    (_external_data, "external files"),
    (_not_onnx, "is not an ONNX model"),
])
def test_hostile_onnx_files_are_one_line(make, needle, capsys, tmp_path):
    path = make(tmp_path / "m.onnx")
    code, _, err = run_cli(["build", path, "--target", "onnxruntime-cpu", "--img-size", "8x8", "--out",
                            tmp_path / "art"], capsys)
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "art").exists()


def test_onnx_options_for_a_checkpoint_are_one_line(capsys, tmp_path):
    code, _, err = run_cli(["build", "enet-camvid", "--target", "onnxruntime-cpu", "--bgr", "--out", tmp_path / "a"],
                           capsys)
    assert code == 2 and "describe an ONNX model" in err


def test_an_onnx_model_is_not_trained_or_compressed_but_says_how_to_build_it(dict_onnx, data, capsys, tmp_path):
    code, _, err = run_cli(["train", "--model", dict_onnx, "--data", data, "--out", tmp_path / "t"], capsys)
    assert code == 2 and "cannot be trained here" in err and not (tmp_path / "t").exists()
    code, _, err = run_cli(["compress", dict_onnx, "--data", data, "--ptq", "--out", tmp_path / "c"], capsys)
    assert code == 2 and "--precision int8" in err and not (tmp_path / "c").exists()


def test_onnx_model_benches_from_a_target_and_is_a_fit_candidate(dict_onnx, data, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    code, _, err = run_cli(["bench", "onnxruntime-cpu", "--model", dict_onnx, "--data", data, "--runs", "3",
                            "--warmup", "1", "--memory-runs", "0", "--json", tmp_path / "b.json"], capsys)
    assert code in (0, 3), err  # 3: an untrained network's output is degenerate, and bench says so
    assert json.loads((tmp_path / "b.json").read_text())["model"] == "onnx:dictnet.onnx"
    code, _, err = run_cli(["fit", "--target", "onnxruntime-cpu", "--data", data, "--models", dict_onnx,
                            "--sizes", "1.0,0.75", "--precisions", "fp32", "--runs", "3", "--memory-runs", "0",
                            "--budget-p99-ms", "10000", "--out", tmp_path / "fit"], capsys)
    assert code == 0, err
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    sizes = {tuple(c["size"]) for c in fit["candidates"] if c.get("status") != "failed"}
    assert (64, 96) in sizes and (48, 72) in sizes  # a dynamic input: fit tries its sizes
