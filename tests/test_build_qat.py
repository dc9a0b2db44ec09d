"""edgeseg build with a QAT checkpoint (edgeseg compress --qat): ONNX Runtime, OpenVINO and
Jetson artifacts carry the checkpoint's own trained quantizers (no calibration data), parity
compares with the fake-quantized PyTorch model; TFLite re-quantizes the QAT weights and says so."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

pytest.importorskip("nncf")
pytest.importorskip("openvino")

from edgeseg.build import build  # noqa: E402
from edgeseg.data.info import CAMVID  # noqa: E402
from edgeseg.errors import ConfigError  # noqa: E402
from edgeseg.formats.base import BuildError  # noqa: E402
from edgeseg.models import create_model  # noqa: E402

pytestmark = pytest.mark.slow  # PT2E / QAT / zoo builds: several seconds each

SIZE = (64, 96)


@pytest.fixture(scope="module")
def qat_ckpts(tiny_camvid, tmp_path_factory):
    """QAT checkpoints of a tiny BiSeNetV1 for the 'cpu' (asymmetric activations) and 'jetson'
    (symmetric) presets, one fine-tuning step each."""
    from edgeseg.compress import Data, qat, save_compressed

    root = tmp_path_factory.mktemp("qat")
    data = Data(tiny_camvid, CAMVID, 32, val_images=2, calib_images=2)
    out = {}
    for target in ("cpu", "jetson"):
        torch.manual_seed(0)
        model = create_model("bisenetv1", 11, widths=(8, 16, 32, 64)).eval()
        q, _ = qat(model, data, img_size=SIZE, steps=1, batch_size=2, target=target)
        out[target] = save_compressed(q, CAMVID, SIZE, root / f"qat-{target}.pt",
                                      quantization={"method": "qat", "target": target})
    return out


def manifest(out):
    return json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize("target", ["onnxruntime-cpu", "openvino-cpu"])
def test_qat_checkpoint_builds_without_calibration_data(qat_ckpts, target, tmp_path):
    out = build(qat_ckpts["cpu"], target, out=tmp_path / "a")  # no --data, no --precision: int8 from the ckpt
    m = manifest(out)
    q = m["quantization"]
    assert m["precision"] == "int8" and q["method"].startswith("QAT checkpoint")
    assert q["calibration_images"] == 0 and q["checkpoint"] == {"method": "qat", "target": "cpu", "backend": "nncf"}
    assert m["parity"]["ran"] and m["parity"]["passed"] and "fake-quantized" in m["parity"]["reference"]
    if target == "onnxruntime-cpu":
        ops = [n.op_type for n in onnx.load(str(out / "model_int8.onnx")).graph.node]
        assert ops.count("QuantizeLinear") == q["qdq_nodes"]["QuantizeLinear"] > 10
    else:
        assert q["fake_quantize_nodes"] > 10


def test_qat_checkpoint_for_jetson_needs_symmetric_quantizers(qat_ckpts, tmp_path):
    with pytest.raises(BuildError, match="symmetric int8.*--target jetson"):
        build(qat_ckpts["cpu"], "jetson", precision="int8", out=tmp_path / "a")
    assert not (tmp_path / "a").exists()
    out = build(qat_ckpts["jetson"], "jetson", precision="int8", out=tmp_path / "b")
    m = manifest(out)
    assert m["files"]["model"] == "model_int8.onnx" and m["quantization"]["explicit_quantization"]
    assert "--int8" in m["compiler"]["command"]
    graph = onnx.load(str(out / "model_int8.onnx")).graph
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    consts.update({n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    zero_points = [consts[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear"]
    assert len(zero_points) > 10 and all((z == 0).all() for z in zero_points)


def test_qat_checkpoint_refuses_float_precision(qat_ckpts, tmp_path):
    with pytest.raises(ConfigError, match="int8-quantized checkpoint"):
        build(qat_ckpts["cpu"], "openvino-cpu", precision="fp16", out=tmp_path / "a")


def test_qat_checkpoint_for_tflite_requantizes_and_says_so(qat_ckpts, tiny_camvid, tmp_path):
    pytest.importorskip("litert_torch")
    with pytest.raises(ConfigError, match="calibration data"):
        build(qat_ckpts["cpu"], "coral", out=tmp_path / "a")
    report = []
    out = build(qat_ckpts["cpu"], "coral", data=tiny_camvid, out=tmp_path / "b", allow_drop=True, report=report)
    assert any("re-quantizes the checkpoint's QAT-trained weights" in line for line in report)
    m = manifest(out)
    assert m["quantization"]["calibration"]["images"] > 0 and "fake-quantized" in m["parity"]["reference"]
