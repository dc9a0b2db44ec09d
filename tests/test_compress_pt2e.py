"""`edgeseg compress --target edgetpu`: PT2E quantization (litert-torch's quantizer) whose
checkpoint `edgeseg build --target coral` converts without calibration data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from edgeseg.data.info import CAMVID  # noqa: E402
from edgeseg.errors import ConfigError  # noqa: E402
from edgeseg.models import create_model  # noqa: E402
from edgeseg.train.checkpoint import make_checkpoint, save_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow  # PT2E / QAT / zoo builds: several seconds each

SIZE = (64, 96)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return create_model("bisenetv1", 11, widths=(8, 16, 32, 64)).eval()


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("pt2e_ckpt") / "tiny.pt"
    save_checkpoint(make_checkpoint(tiny_model(), CAMVID, SIZE), path)
    return path


@pytest.fixture(scope="module")
def data(tiny_camvid):
    from edgeseg.compress import Data

    return Data(tiny_camvid, CAMVID, 32, val_images=2, calib_images=2)


def test_qat_trains_and_round_trips(tmp_path, data):
    from edgeseg.checkpoints import load_compressed
    from edgeseg.compress import save_compressed
    from edgeseg.formats.litert import pt2e

    model = tiny_model()
    q, rec = pt2e.qat(model, data, img_size=SIZE, steps=2, batch_size=2, lr=1e-3)
    assert rec["steps"] == 2 and rec["backend"] == "pt2e"
    # the weights trained: the graph's first conv weight moved away from the float model's
    first = next(v for k, v in q.graph.state_dict().items() if k.endswith("weight"))
    assert first.shape[0] > 0
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        fp, fq = model(x), q(x)
    assert fq.shape == fp.shape and not torch.equal(fp, fq)  # fake-quantized: close, not equal
    path = save_compressed(q, CAMVID, q.input_size, tmp_path / "q.pt",
                           quantization={"method": "qat", "target": "edgetpu", "backend": "pt2e"})
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["quantization"]["backend"] == "pt2e" and "nncf_config" not in ckpt["quantization"]
    # rebuilt from the registry model + state dict alone: identical outputs, no data involved
    q2, info, _ = load_compressed(path)
    assert isinstance(q2, pt2e.PT2EModel) and info.classes == CAMVID.classes
    with torch.no_grad():
        assert torch.equal(q(x), q2(x))
        # smaller inputs are padded to the static size and cropped back
        assert q2(x[..., :32, :64]).shape == (1, 11, 32, 64)


def _litert_logits(path, x_nchw):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    s, z = inp["quantization"]
    a = np.clip(np.round(x_nchw.transpose(0, 2, 3, 1) / s) + z, -128, 127).astype(np.int8)
    it.set_tensor(inp["index"], a)
    it.invoke()
    s, z = out["quantization"]
    return (it.get_tensor(out["index"]).astype(np.float32) - z) * s


def test_cli_compress_then_build_coral_without_calibration(tmp_path, tiny_ckpt, tiny_camvid):
    """The QAT checkpoint builds for coral with no --data: its own quantizers are converted, and
    the .tflite computes what the fake-quantized torch model computes."""
    from edgeseg.build import build
    from edgeseg.cli.main import main
    from edgeseg.checkpoints import load_model

    out = tmp_path / "run"
    rc = main(["compress", str(tiny_ckpt), "--data", str(tiny_camvid), "--qat", "--target", "coral", "--steps", "1",
               "--batch-size", "2", "--runs", "1", "--val-images", "2", "--calib-images", "2",
               "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    row = report["variants"]["int8_qat"]
    assert row["latency_litert_cpu"]["median_ms"] > 0 and row["tflite_mb"] > 0
    assert 0.0 <= row["miou_tflite"] <= 1.0
    assert "not measured" in row["latency_openvino_cpu"]["error"]
    assert "TFLite val mIoU" in (out / "report.md").read_text()
    assert report["quantizer"]["head"] == {"low_res_output": True}  # the coral profile's "auto", resolved

    lines: list[str] = []
    art = build(out / "int8_qat.pt", "coral", out=tmp_path / "art", report=lines)
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["quantization"]["calibration_images"] == 0
    assert "PT2E" in manifest["parity"]["reference"] and manifest["parity"]["passed"]
    q, _, _ = load_model(out / "int8_qat.pt")
    # the coral profile's low_res_output "auto": BiSeNet ends with a resize, so the trained graph
    # and the file output int8 logits at 1/8 and the runtime upsamples them
    assert q.head == {"low_res_output": True} and manifest["output"]["size"] == [SIZE[0] // 8, SIZE[1] // 8]
    x = np.random.default_rng(0).standard_normal((1, 3, *SIZE)).astype(np.float32)
    with torch.no_grad():
        ref = q.graph(torch.from_numpy(x).permute(0, 2, 3, 1).contiguous()).numpy()
    got = _litert_logits(art / "model_int8.tflite", x)
    assert got.shape == ref.shape == (1, SIZE[0] // 8, SIZE[1] // 8, 11)
    step = manifest["output"]["quant"]["scale"]
    # integer kernels (fixed-point requantization, int32 bias) against their float simulation:
    # off by a step here and there, not systematically
    diff = np.abs(got - ref) / step
    print(f"tflite vs fake-quant torch: mean {diff.mean():.3f} steps, max {diff.max():.1f}, "
          f"argmax agreement {(got.argmax(-1) == ref.argmax(-1)).mean():.4f}")
    assert diff.mean() <= 2 and (got.argmax(-1) == ref.argmax(-1)).mean() > 0.95
    # the file's input quantization is the trained graph's first quantizer, not a new calibration
    first_q = next(n for n in q.converted().graph.nodes if "quantize_per_tensor" in str(n.target))
    tflite_in = manifest["input"]["quant"]
    assert tflite_in["scale"] == pytest.approx(float(first_q.args[1]), rel=1e-6)
    assert tflite_in["zero_point"] == int(first_q.args[2])


def test_pt2e_checkpoint_is_refused_by_other_targets(tmp_path, data):
    from edgeseg.build import build
    from edgeseg.compress import save_compressed
    from edgeseg.formats.litert import pt2e

    q = pt2e.ptq(tiny_model(), data.calibration(SIZE), input_size=SIZE)
    path = save_compressed(q, CAMVID, SIZE, tmp_path / "q.pt",
                           quantization={"method": "ptq", "target": "edgetpu", "backend": "pt2e"})
    with pytest.raises(ConfigError, match="--target coral"):
        build(path, "openvino-cpu", out=tmp_path / "art")
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize("kwargs, text", [
    ({"max_drop": 0.01}, "--max-drop"),
    ({"qat": True, "ignore": ["head"]}, "--ignore"),
])
def test_edgetpu_refuses_nncf_only_options(tmp_path, tiny_ckpt, tiny_camvid, kwargs, text):
    from edgeseg.compress_run import compress

    with pytest.raises(ConfigError, match=text):
        compress(tiny_ckpt, tiny_camvid, target="edgetpu", out=tmp_path / "out", log=lambda *_: None, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_pruned_qat_for_edgetpu_reloads_and_builds(tmp_path, tiny_ckpt, tiny_camvid):
    """Structured pruning + PT2E QAT: the checkpoint records the pruned widths, so it reloads
    (identical outputs) and builds for coral without data."""
    from edgeseg.build import build
    from edgeseg.checkpoints import load_compressed
    from edgeseg.compress_run import compress

    out = tmp_path / "run"
    report = compress(tiny_ckpt, tiny_camvid, qat=True, prune=0.3, target="edgetpu", steps=1, batch_size=2,
                      val_images=2, calib_images=2, runs=1, warmup=0, out=out, log=lambda *_: None)
    assert report["variants"]["pruned_int8_qat"]["miou_tflite"] is not None
    q, _, ckpt = load_compressed(out / "pruned_int8_qat.pt")
    assert ckpt["pruning"] and ckpt["quantization"]["backend"] == "pt2e"
    original = load_compressed(tiny_ckpt)[2]["state_dict"]
    channels = sum(v[0] for k, v in q.float_shapes.items() if k.endswith("weight"))
    assert channels < sum(v.shape[0] for k, v in original.items() if k.endswith("weight"))  # channels removed
    x = torch.randn(1, 3, *SIZE)
    q2, _, _ = load_compressed(out / "pruned_int8_qat.pt")
    with torch.no_grad():
        assert torch.equal(q(x), q2(x))
    art = build(out / "pruned_int8_qat.pt", "coral", out=tmp_path / "art")
    assert json.loads((art / "manifest.json").read_text())["parity"]["passed"]


def test_graph_from_other_versions_says_so(tmp_path, data):
    """A PT2E state dict that does not fit the graph rebuilt here names the package versions
    it was saved with (the graph's layout comes from the quantizer)."""
    from edgeseg.checkpoints import load_compressed
    from edgeseg.compress import save_compressed
    from edgeseg.formats.litert import pt2e
    from edgeseg.errors import CheckpointError

    q = pt2e.ptq(tiny_model(), data.calibration(SIZE), input_size=SIZE)
    path = save_compressed(q, CAMVID, SIZE, tmp_path / "q.pt",
                           quantization={"method": "ptq", "target": "edgetpu", "backend": "pt2e"})
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["quantization"]["versions"]["torch"] == torch.__version__
    ckpt["quantization"]["versions"]["torchao"] = "0.0.1"
    ckpt["state_dict"].pop(next(k for k in ckpt["state_dict"] if "activation_post_process" in k))
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"do not fit.*torchao 0\.0\.1 -> "):
        load_compressed(tmp_path / "other.pt")
