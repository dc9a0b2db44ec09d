"""Coral / LiteRT backend: full-int8 TFLite from litert-torch + PT2E, run in ai_edge_litert.

Parity threshold: argmax agreement with PyTorch fp32 > 0.90 on a briefly trained 2-level
U-Net (64x96, 8 calibration images; measured about 0.97). The PT2E int8 model is
per-tensor int8 activations end to end, so it agrees less than OpenVINO's int8.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from test_openvino import SIZE, normalise, trained_unet  # noqa: E402

from edgeseg.build import make_manifest, write_manifest  # noqa: E402
from edgeseg.data.info import CAMVID  # noqa: E402
from edgeseg.errors import ConfigError  # noqa: E402
from edgeseg.export import tflite  # noqa: E402
from edgeseg.models import SegmentationModel  # noqa: E402
from edgeseg.runtime import load_predictor  # noqa: E402
from edgeseg.targets import load_target  # noqa: E402


class TinySeg(SegmentationModel):
    """conv/relu, max-pool, conv/relu, concat with the pooled skip, 1x1 classifier at 1/2,
    bilinear x2 upsample: every op on Coral's supported list."""

    size_divisor = 2
    model_name = "tinyseg"

    def __init__(self, num_classes: int = 11):
        super().__init__(num_classes)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.cls = nn.Conv2d(16, num_classes, 1)

    def forward_features(self, x):
        p = self.pool(self.stem(x))
        y = self.cls(torch.cat([p, self.body(p)], 1))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def build(model, calib, out_dir, **kw):
    profile = load_target("coral")
    result = tflite.export(model, CAMVID, input_size=SIZE, precision="int8", out_dir=out_dir, profile=profile,
                           calib=calib, **kw)
    write_manifest(out_dir, make_manifest(model=model, info=CAMVID, profile=profile, precision="int8",
                                          input_size=SIZE, result=result))
    return result


@pytest.fixture(scope="module")
def unet_int8(tmp_path_factory):
    model, calib, test = trained_unet()
    out = tmp_path_factory.mktemp("coral_unet")
    return model, calib, test, out, build(model, calib, out)


def test_full_int8_io_and_parity(unet_int8):
    model, calib, test, out, result = unet_int8
    d = result.details
    assert d["input"]["dtype"] in ("int8", "uint8") and d["output"]["dtype"] in ("int8", "uint8")
    assert d["input"]["quant"]["scale"] > 0 and d["output"]["quant"]["scale"] > 0
    assert d["input"]["layout"] == "NHWC" and d["output"]["size"] == list(SIZE)
    assert d["quantization"]["full_integer"] and d["edgetpu_check"]["transpose_ops"] == 0
    pred = load_predictor(out, threads=1)
    assert pred.runtime == "litert" and pred.device == "cpu"
    x, _ = pred.preprocess(test[0])
    assert x.dtype == np.int8 and x.shape == (1, *SIZE, 3)
    agree = []
    for img in test:
        with torch.no_grad():
            ref = model(torch.from_numpy(normalise(img))).argmax(1)[0].numpy()
        agree.append(float((pred.predict(img) == ref).mean()))
    print(f"tflite int8: argmax agreement {np.mean(agree):.4f}")
    assert np.mean(agree) > 0.90


def test_int8_needs_calibration(tmp_path):
    with pytest.raises(ConfigError, match="int8 needs calibration data"):
        tflite.export(TinySeg().eval(), CAMVID, input_size=SIZE, precision="int8", out_dir=tmp_path,
                      profile=load_target("coral"), calib=None)


def test_low_res_output_needs_a_final_resize(unet_int8, tmp_path):
    model, calib, *_ = unet_int8  # the U-Net ends with its 1x1 classifier, not a resize
    with pytest.raises(ConfigError, match="not a resize"):
        build(model, calib[:1], tmp_path, low_res_output=True)


def test_low_res_output_with_fused_argmax(tmp_path):
    torch.manual_seed(0)
    model = TinySeg().eval()
    calib = [np.random.default_rng(i).standard_normal((1, 3, *SIZE)).astype(np.float32) for i in range(2)]
    d = build(model, calib, tmp_path, low_res_output=True, fused_argmax=True).details
    assert d["output"]["kind"] == "classes" and d["output"]["size"] == [SIZE[0] // 2, SIZE[1] // 2]
    assert d["head"]["output_stride"] == [2, 2]
    # ARG_MAX is not on the Edge TPU list: the check names it, and only it runs on the CPU
    check = d["edgetpu_check"]
    assert check["first_unmapped"]["op"] == "ARG_MAX" and check["ops_on_cpu"] == 1
    assert "RESIZE_BILINEAR" not in check["ops"]
    pred = load_predictor(tmp_path, threads=1)
    img = (np.random.default_rng(0).random((*SIZE, 3)) * 255).astype(np.uint8)
    cls = pred.predict(img)
    assert cls.shape == SIZE and cls.dtype == np.uint8 and cls.max() < 11
