"""OpenVINO backend: fp32 / fp16 / int8 (NNCF PTQ) IR export, the OpenVINO Predictor, the NPU profile.

Parity thresholds (measured on a briefly trained 2-level U-Net, 64x96 images, 1 thread):
fp32 max |logit diff| < 1e-3 and argmax agreement > 0.999; fp16 agreement > 0.99;
int8 (NNCF PTQ, 8 calibration images) agreement > 0.95 (measured about 0.99).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from helpers import make_camvid_sample  # noqa: E402

from edgeseg.build import make_manifest, write_manifest  # noqa: E402
from edgeseg.data.info import CAMVID  # noqa: E402
from edgeseg.errors import ConfigError  # noqa: E402
from edgeseg.formats.openvino import export as ovx  # noqa: E402
from edgeseg.models import create_model  # noqa: E402
from edgeseg.formats import load_predictor  # noqa: E402
from edgeseg.targets import load_target  # noqa: E402

SIZE = (64, 96)


def normalise(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float32).transpose(2, 0, 1) / 255.0
    mean = np.asarray(CAMVID.mean, np.float32).reshape(3, 1, 1)
    std = np.asarray(CAMVID.std, np.float32).reshape(3, 1, 1)
    return ((x - mean) / std)[None]


def trained_unet(steps: int = 80, seed: int = 0):
    """A 2-level U-Net (base 4 channels) fitted for a few steps on generated CamVid samples."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = create_model("unet", 11, base_channels=4, depth=2, upsample="bilinear")
    data = [make_camvid_sample(rng, SIZE) for _ in range(8)]
    x = torch.from_numpy(np.concatenate([normalise(i) for i, _ in data]))
    y = torch.from_numpy(np.stack([m for _, m in data]).astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y, ignore_index=11).backward()
        opt.step()
    model.eval()
    calib = [normalise(i) for i, _ in data]
    test_rng = np.random.default_rng(100 + seed)
    test = [make_camvid_sample(test_rng, SIZE)[0] for _ in range(3)]
    return model, calib, test


@pytest.fixture(scope="module")
def setup():
    return trained_unet()


def build(model, calib, tmp_path, target, precision):
    profile = load_target(target)
    result = ovx.export(model, CAMVID, input_size=SIZE, precision=precision, out_dir=tmp_path, profile=profile,
                        calib=calib if precision == "int8" else None)
    write_manifest(tmp_path, make_manifest(model=model, info=CAMVID, profile=profile, precision=precision,
                                           input_size=SIZE, result=result))
    return result


def compare(model, predictor, images):
    diffs, agree = [], []
    for img in images:
        x = normalise(img)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        x_pre, _ = predictor.preprocess(img)
        np.testing.assert_allclose(x_pre, x, atol=1e-5)  # the base class pre-processes the same way
        y = predictor.infer(x_pre)
        diffs.append(float(np.abs(y - ref).max()))
        agree.append(float((predictor.predict(img) == ref.argmax(1)[0]).mean()))
    return max(diffs), float(np.mean(agree))


@pytest.mark.parametrize("precision,max_diff,min_agree", [("fp32", 1e-3, 0.999), ("fp16", None, 0.99),
                                                          ("int8", None, 0.95)])
def test_openvino_cpu_matches_pytorch(setup, tmp_path, precision, max_diff, min_agree):
    model, calib, test = setup
    result = build(model, calib, tmp_path, "openvino-cpu", precision)
    assert result.model_file.name == "model.xml" and (tmp_path / "model.bin").is_file()
    assert result.details["ir_check"]["static"]
    pred = load_predictor(tmp_path, threads=1)
    assert pred.runtime == "openvino" and pred.device == "CPU"
    diff, agree = compare(model, pred, test)
    print(f"openvino {precision}: max |logit diff| {diff:.4g}, argmax agreement {agree:.4f}")
    if max_diff is not None:
        assert diff < max_diff
    assert agree > min_agree
    if precision == "int8":
        q = result.details["quantization"]
        assert q["fake_quantize_nodes"] > 0 and q["preset"] == "mixed" and q["calibration_images"] == len(calib)
    if precision == "fp16":
        assert result.details["openvino"]["compress_to_fp16"]


def test_openvino_int8_needs_calibration(setup, tmp_path):
    model, _, _ = setup
    with pytest.raises(ConfigError, match="int8 needs calibration data"):
        ovx.export(model, CAMVID, input_size=SIZE, precision="int8", out_dir=tmp_path,
                   profile=load_target("openvino-cpu"), calib=None)


def test_openvino_npu_profile_builds_static_ir(setup, tmp_path):
    import openvino as ov

    model, calib, test = setup
    result = build(model, calib, tmp_path, "openvino-npu", "fp16")
    ir = ov.Core().read_model(str(result.model_file))
    assert not ir.is_dynamic() and list(ir.inputs[0].get_shape()) == [1, 3, *SIZE]
    assert result.details["ir_check"]["static"]
    comp = result.details["compiler"]
    if "NPU" in ov.Core().available_devices:  # pragma: no cover - needs an Intel NPU
        assert comp["ran"]
        return
    assert not comp["ran"] and "no NPU" in comp["reason"]
    assert "parity was measured on CPU" in result.details["runtime_note"]
    with pytest.raises(ConfigError, match="'NPU' is not available"):
        load_predictor(tmp_path)
    # the proxy: the same IR on the CPU
    _, agree = compare(model, load_predictor(tmp_path, device="CPU", threads=1), test[:1])
    assert agree > 0.99


# -- precision means what it says: the CPU plugin runs f32 IRs in bf16 on AMX / AVX-512 BF16
# CPUs unless told otherwise. These tests force that default path where the CPU has bf16 (and
# prove fp32 stays f32), and check the refusal where it has none.

from edgeseg.formats.openvino.runtime import compiled_precision, cpu_supports_bf16  # noqa: E402

HAS_BF16 = cpu_supports_bf16()
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 (AMX / AVX-512 BF16): OpenVINO "
                                                     "computes f32 IRs in f32 here whatever it is told")


@needs_bf16
def test_fp32_stays_f32_on_a_cpu_with_bf16(setup, tmp_path):
    import openvino as ov

    model, calib, test = setup
    result = build(model, calib, tmp_path, "openvino-cpu", "fp32")
    assert result.details["openvino"]["inference_precision"] == "f32"
    # the plugin's own default here is bf16 (on AMX CPUs; it may stay f32 on a CPU with AVX-512
    # BF16 alone): what the artifact's hint must override
    default = ov.Core().compile_model(str(result.model_file), "CPU")
    if compiled_precision(default) != "bf16":
        pytest.skip(f"OpenVINO's default on this CPU computes {compiled_precision(default)}, not bf16")
    pred = load_predictor(tmp_path, threads=1)
    assert pred.execution()["inference_precision"] == "f32"
    diff, agree = compare(model, pred, test)
    x = normalise(test[0])
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    default_diff = float(np.abs(default(x)[0] - ref).max())
    print(f"fp32 artifact: max |logit diff| {diff:.3g} (f32), {default_diff:.3g} (the plugin's bf16 default)")
    assert diff < 1e-3 and agree > 0.999
    assert default_diff > 10 * diff  # the default path really is another precision


@needs_bf16
def test_bf16_build_runs_in_bf16_and_passes_its_gate(setup, tmp_path):
    from edgeseg.build import build as build_artifact
    from edgeseg.train.checkpoint import make_checkpoint, save_checkpoint

    model, calib, test = setup
    ckpt = tmp_path / "unet.pt"
    save_checkpoint(make_checkpoint(model, CAMVID, SIZE), ckpt)
    out = build_artifact(ckpt, "openvino-cpu", precision="bf16", out=tmp_path / "bf16")
    import json

    m = json.loads((out / "manifest.json").read_text())
    assert m["precision"] == "bf16" and m["openvino"]["inference_precision"] == "bf16"
    assert m["execution"]["inference_precision"] == "bf16" and m["execution"]["isa"]
    assert m["parity"]["passed"] and m["parity"]["agreement"] >= load_target("openvino-cpu").min_agreement("bf16")
    pred = load_predictor(out, threads=1)
    assert pred.execution()["inference_precision"] == "bf16"


@pytest.mark.skipif(HAS_BF16, reason="this CPU has bf16: the refusal is checked with a stand-in below")
def test_bf16_refused_on_this_cpu_without_bf16(setup, tmp_path):
    model, _, _ = setup
    with pytest.raises(ConfigError, match="needs a CPU with bf16 support"):
        ovx.export(model, CAMVID, input_size=SIZE, precision="bf16", out_dir=tmp_path,
                   profile=load_target("openvino-cpu"))


def test_bf16_refused_where_the_cpu_says_it_has_none(setup, tmp_path, monkeypatch):
    """On any CPU: with OpenVINO's capability list saying no BF16, a bf16 build and a bf16
    artifact are refused in one line (OpenVINO would silently compute f32)."""
    import json

    import edgeseg.formats.openvino.runtime as ovrt
    from edgeseg.bench.matrix import plan

    model, calib, _ = setup
    build(model, calib, tmp_path, "openvino-cpu", "fp32")
    m = json.loads((tmp_path / "manifest.json").read_text())
    m["precision"], m["openvino"]["inference_precision"] = "bf16", "bf16"
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    monkeypatch.setattr(ovrt, "cpu_supports_bf16", lambda core=None: False)
    with pytest.raises(ConfigError, match="needs a CPU with bf16 support"):
        ovx.export(model, CAMVID, input_size=SIZE, precision="bf16", out_dir=tmp_path / "b",
                   profile=load_target("openvino-cpu"))
    with pytest.raises(ConfigError, match=r"artifact .* \(bf16\) needs a CPU with bf16 support"):
        load_predictor(tmp_path)
    row = next(r for r in plan(["openvino-cpu:bf16"]) if r["precision"] == "bf16")
    assert not row["runnable"] and "bf16" in row["why"]


def test_execution_precision_is_what_openvino_reports(setup, tmp_path):
    """fp16 and int8 artifacts compute their float ops in f32 on every CPU (the hint), and the
    predictor reports what the compiled model says, not what was asked."""
    model, calib, _ = setup
    for precision in ("fp16", "int8"):
        out = tmp_path / precision
        out.mkdir()
        build(model, calib, out, "openvino-cpu", precision)
        pred = load_predictor(out, threads=1)
        assert pred.execution() == {"device": "CPU", "inference_precision": compiled_precision(pred.compiled)}
        assert pred.execution()["inference_precision"] == "f32"
