"""edgeseg.compress on a tiny BiSeNetV1 and generated CamVid data (CPU, well under a minute)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("nncf")
pytest.importorskip("openvino")

from edgeseg.data.info import CAMVID, VOC  # noqa: E402
from edgeseg.errors import CheckpointError, ConfigError, DataError  # noqa: E402
from edgeseg.models import create_model  # noqa: E402
from edgeseg.train.checkpoint import make_checkpoint, save_checkpoint  # noqa: E402

SIZE = (64, 96)


def tiny_model(seed=0, num_classes=11):
    torch.manual_seed(seed)
    return create_model("bisenetv1", num_classes, widths=(8, 16, 32, 64)).eval()


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("compress_ckpt") / "tiny.pt"
    save_checkpoint(make_checkpoint(tiny_model(), CAMVID, SIZE), path)
    return path


@pytest.fixture(scope="module")
def data(tiny_camvid):
    from edgeseg.compress import Data

    return Data(tiny_camvid, CAMVID, 32, val_images=2, calib_images=2)


def test_qat_checkpoint_round_trip(tmp_path, data):
    from edgeseg.checkpoints import load_compressed
    from edgeseg.compress import qat, save_compressed
    from edgeseg.compress.quant import quantizer_count

    q, rec = qat(tiny_model(), data, img_size=SIZE, steps=1, batch_size=2)
    assert rec["steps"] == 1 and quantizer_count(q) > 0
    path = save_compressed(q, CAMVID, SIZE, tmp_path / "q.pt", quantization={"method": "qat", "target": "cpu"})
    ckpt = torch.load(path, weights_only=True)
    assert "nncf_config" in ckpt["quantization"]
    # rebuilt from config + state dict alone: no calibration data involved
    q2, info, _ = load_compressed(path)
    assert info.classes == CAMVID.classes and quantizer_count(q2) == quantizer_count(q)
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        assert torch.equal(q.eval()(x), q2(x))


def test_structured_pruning_removes_channels_and_exports(tmp_path):
    import onnxruntime as ort

    from edgeseg.checkpoints import load_compressed
    from edgeseg.compress import prune_structured, save_compressed
    from edgeseg.formats.openvino.quantize import to_openvino
    from edgeseg.formats.openvino.runtime import compile_on_cpu
    from edgeseg.formats.onnx import export_any as export_onnx
    from edgeseg.models.profile import count_params

    model = tiny_model()
    x = torch.randn(1, 3, *SIZE)
    det = prune_structured(model, x, 0.3)
    assert det["params_after"] < 0.75 * det["params_before"] == 0.75 * count_params(tiny_model())
    assert det["channels"] and all(after < before for before, after in det["channels"].values())
    with torch.no_grad():
        model.train()  # auxiliary heads were pruned consistently too (this updates BN statistics)
        assert all(o.shape == (2, 11, *SIZE) for o in model(x.repeat(2, 1, 1, 1)))
        model.eval()
        y = model(x)
        assert y.shape == (1, 11, *SIZE)
    # the checkpoint rebuilds the pruned widths from the registry model + state dict
    path = save_compressed(model, CAMVID, SIZE, tmp_path / "p.pt", pruning=det)
    m2, _, _ = load_compressed(path)
    with torch.no_grad():
        assert torch.allclose(m2(x), y, atol=1e-6)
    onnx_path = export_onnx(m2, SIZE, tmp_path / "p.onnx")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x.numpy()})[0], y.numpy(), atol=1e-4)
    compiled = compile_on_cpu(to_openvino(m2, SIZE))  # f32 (the CPU plugin's default is bf16 on AMX)
    np.testing.assert_allclose(compiled(x.numpy())[compiled.outputs[0]], y.numpy(), atol=1e-3)


def test_unstructured_pruning_zeroes_weights():
    from edgeseg.compress import prune_unstructured, strip_unstructured
    from edgeseg.compress.prune import sparsity

    x = torch.randn(1, 3, *SIZE)
    masked, det = prune_unstructured(tiny_model(), x, 0.5)
    plain, stats = strip_unstructured(masked, x)
    assert sparsity(plain) > 0.4 and type(plain).__name__ == "BiSeNetV1"
    assert plain(x).shape == (1, 11, *SIZE)


@pytest.mark.slow
def test_accuracy_controlled_ptq_respects_bound(data):
    from edgeseg.formats.openvino.quantize import ov_summary, ptq_accuracy_control, to_openvino

    model = tiny_model(seed=3)
    max_drop = 0.002
    ovq, det = ptq_accuracy_control(model, data, SIZE, max_drop=max_drop)
    assert det["within_bound"] and det["drop"] <= max_drop + 1e-9
    # independent check of the returned model against the fp32 one
    fp = ov_summary(to_openvino(model, SIZE), data, SIZE)["miou"]
    q = ov_summary(ovq, data, SIZE)["miou"]
    assert fp - q <= max_drop + 1e-9
    assert det["fake_quantize_after"] > 0


@pytest.mark.parametrize("kwargs, error, text", [
    ({"prune": 1.5}, ConfigError, "--prune"),
    ({"prune": 0.0}, ConfigError, "--prune"),
    ({"prune": 0.3, "prune_mode": "blocks"}, ConfigError, "--prune-mode"),
    ({"ptq": True, "max_drop": 2.0}, ConfigError, "--max-drop"),
    ({"ptq": True, "target": "gpu"}, ConfigError, "target"),
    ({"prune": 0.3, "prune_epochs": 0}, ConfigError, "--prune-epochs"),
    ({"prune": 0.3, "prune_lr": -1.0}, ConfigError, "--prune-lr"),
    ({}, ConfigError, "nothing to do"),
])
def test_bad_options(tmp_path, tiny_ckpt, tiny_camvid, kwargs, error, text):
    from edgeseg.compress_run import compress

    out = tmp_path / "out"
    with pytest.raises(error, match=text):
        compress(tiny_ckpt, tiny_camvid, out=out, log=lambda *_: None, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_bad_checkpoint_and_data(tmp_path, tiny_camvid):
    from edgeseg.compress_run import compress

    # a checkpoint whose weights are another model's
    other = make_checkpoint(tiny_model(), CAMVID, SIZE)
    other["model"] = {"name": "unet", "num_classes": 11, "kwargs": {"base_channels": 8}}
    save_checkpoint(other, tmp_path / "other.pt")
    # a model trained on other classes
    voc = tiny_model(num_classes=VOC.num_classes)
    save_checkpoint(make_checkpoint(voc, VOC, SIZE), tmp_path / "voc.pt")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(CheckpointError, match="do not fit"):
        compress(tmp_path / "other.pt", tiny_camvid, ptq=True, out=tmp_path / "o1", log=lambda *_: None)
    with pytest.raises(DataError, match="classes"):
        compress(tmp_path / "voc.pt", tiny_camvid, ptq=True, out=tmp_path / "o2", log=lambda *_: None)
    with pytest.raises(CheckpointError, match="does not exist"):
        compress(tmp_path / "missing.pt", tiny_camvid, ptq=True, out=tmp_path / "o3", log=lambda *_: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_failure_mid_run_leaves_nothing(tmp_path, tiny_ckpt, tiny_camvid, monkeypatch):
    from edgeseg.compress import quant
    from edgeseg.compress_run import compress

    def boom(*a, **k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(quant, "ptq", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        compress(tiny_ckpt, tiny_camvid, ptq=True, out=tmp_path / "out", val_images=1, runs=1, warmup=0,
                 log=lambda *_: None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_prune_qat_report(tmp_path, tiny_ckpt, tiny_camvid):
    from edgeseg.cli.main import main

    out = tmp_path / "run"
    rc = main(["compress", str(tiny_ckpt), "--data", str(tiny_camvid), "--prune", "0.3", "--qat", "--steps", "1",
               "--batch-size", "2", "--runs", "1", "--val-images", "2", "--calib-images", "2", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["variants"]) == {"fp32", "int8_qat", "pruned", "pruned_int8_qat"}
    for row in report["variants"].values():
        assert row["miou"] is not None and "per_class_iou" in row
        assert row["latency_openvino_cpu"]["median_ms"] > 0
        assert row["latency_onnxruntime_cpu"]["median_ms"] > 0
    assert report["variants"]["pruned"]["params"] < report["variants"]["fp32"]["params"]
    assert "| pruned_int8_qat |" in (out / "report.md").read_text()
    assert {p.name for p in out.iterdir()} == {"int8_qat.pt", "pruned.pt", "pruned_int8_qat.pt",
                                               "report.json", "report.md"}
    # a second run into the same folder is refused
    assert main(["compress", str(tiny_ckpt), "--data", str(tiny_camvid), "--ptq", "--out", str(out)]) == 2


def test_ignored_scope_keeps_modules_in_fp32(data):
    from edgeseg.compress import ptq
    from edgeseg.compress_run import _split_ignore
    from edgeseg.compress.quant import pick_sensitive, quantizer_count

    calib = data.calibration(SIZE)
    full = quantizer_count(ptq(tiny_model(), calib))
    names, patterns = _split_ignore(["head", "ffm.conv"])
    assert names == [] and len(patterns) == 2
    kept = quantizer_count(ptq(tiny_model(), calib, ignore_names=names, ignore_patterns=patterns))
    assert 0 < kept < full
    ranked = {"fp32_miou": 0.50, "int8_miou": 0.46,
              "groups": [{"group": "head", "recovered": 0.02}, {"group": "ffm", "recovered": 0.015},
                         {"group": "stem", "recovered": 0.001}]}
    assert pick_sensitive(ranked, 0.01) == ["head", "ffm"]
    assert pick_sensitive({**ranked, "int8_miou": 0.495}, 0.01) == []


@pytest.mark.slow
def test_cli_keeps_nncf_output_off_stdout_and_shows_its_own_bars(tmp_path, tiny_camvid):
    """stdout piped (it may carry data), stderr on a pseudo-terminal: NNCF's "Statistics collection"
    / "Fast Bias correction" bars and INFO lines reach neither; edgeseg's bars and next steps go to
    the terminal."""
    import re

    from helpers import tiny_checkpoint, under_a_terminal

    ckpt = tiny_checkpoint(tmp_path / "t.pt")  # the smallest model: this test is about output, not accuracy
    out = tmp_path / "run"
    code, seen, stdout = under_a_terminal(["compress", str(ckpt), "--data", str(tiny_camvid), "--ptq", "--runs", "2",
                                           "--val-images", "2", "--calib-images", "3", "--out", str(out)],
                                          extra_env={"TERM": "xterm"}, pipe_stdout=True)
    assert code == 0, stdout[-2000:]
    terminal = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen)
    for noise in ("Statistics collection", "Fast Bias correction", "INFO:nncf", "NNCF initialized"):
        assert noise not in stdout and noise not in terminal, noise
    assert "int8_ptq" in stdout and "wrote" in stdout
    assert re.search(r"calibration \(nncf\.quantize\) ━+ \d+/3", terminal), terminal[-3000:]
    assert re.search(r"val mIoU ━+ \d+/\d+", terminal)
    assert f"next: edgeseg build {out}/int8_ptq.pt --target openvino-cpu --data {tiny_camvid}" in terminal


def test_finetune_keeps_a_class_weighted_loss(data, monkeypatch):
    """A model trained with wce fine-tunes with wce, its class weights counted on the
    fine-tuning images (not plain CE)."""
    import edgeseg.losses
    from edgeseg.compress import finetune
    from edgeseg.data import class_pixel_counts

    built = []
    real = edgeseg.losses.build_loss
    monkeypatch.setattr(edgeseg.losses, "build_loss",
                        lambda spec, n, **kw: built.append((spec, kw.get("class_counts"))) or real(spec, n, **kw))
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    rec = finetune(model, data, img_size=SIZE, steps=1, batch_size=2, loss="wce:enet")
    assert rec["steps"] == 1
    (spec, counts), = built
    assert spec == "wce:enet" and np.array_equal(counts, class_pixel_counts(data.train, CAMVID.num_classes))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
