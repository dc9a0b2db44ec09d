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
from edgeseg.formats.litert import export as tflite  # noqa: E402
from edgeseg.models import SegmentationModel  # noqa: E402
from edgeseg.formats import load_predictor  # noqa: E402
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


@pytest.mark.slow
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


def test_low_res_output_auto_keeps_full_size_without_a_final_resize(unet_int8, tmp_path):
    model, calib, *_ = unet_int8  # no final resize: "auto" (the coral default) keeps the full size
    d = build(model, calib[:1], tmp_path, low_res_output="auto").details
    assert d["output"]["size"] == list(SIZE) and d["head"]["low_res_output"] is False


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


# --- export-time rewrites (edgeseg/formats/litert/rewrite.py) ------------------------------------

def _exported(model, size=SIZE):
    return torch.export.export(model.eval(), (torch.zeros(1, 3, *size),)).module()


def _random_bn_stats(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def test_rewrites_are_exact_on_bisenetv1():
    from edgeseg.formats.litert import rewrite
    from edgeseg.models import create_model

    torch.manual_seed(0)
    model = _random_bn_stats(create_model("bisenetv1", 3))
    gm = _exported(model)
    counts = rewrite.apply_rewrites(gm)
    assert counts == {"sink_spatial_expand": 1, "zero_pad_nonneg_maxpool": 1, "unpad_conv_transpose": 0,
                      "explicit_pad_shared_input_conv": 0}
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    aten = torch.ops.aten
    assert aten.expand_as.default not in targets and aten.expand.default not in targets
    pools = [n for n in gm.graph.nodes if n.target == aten.max_pool2d.default]
    assert len(pools) == 1 and list(pools[0].args[3]) == [0, 0]
    assert pools[0].args[0].target == aten.constant_pad_nd.default
    xs = [torch.randn(1, 3, *SIZE) * 3 for _ in range(3)]
    with torch.no_grad():
        scale = max(float(model(x).abs().max()) for x in xs)
    # the same math; only the conv over a 1x1 map instead of a constant 2x3 map rounds differently
    assert rewrite.max_abs_diff(model, gm, xs) <= 1e-5 * scale


def test_rewrites_are_exact_on_enet():
    """ENet's padded stride-2 up-convolutions and its initial block (image -> stride-2 conv and
    max-pool) are the patterns litert-torch failed on; rewritten, the fp32 output is the same."""
    from edgeseg.formats.litert import rewrite
    from edgeseg.models import create_model

    torch.manual_seed(0)
    model = _random_bn_stats(create_model("enet", 3))
    gm = _exported(model)
    counts = rewrite.apply_rewrites(gm)
    assert counts["unpad_conv_transpose"] >= 1 and counts["explicit_pad_shared_input_conv"] == 1
    aten = torch.ops.aten
    deconvs = [n for n in gm.graph.nodes if n.target == aten.conv_transpose2d.input]
    assert deconvs and all(list(n.args[4]) == [0, 0] for n in deconvs)
    xs = [torch.randn(1, 3, *SIZE) for _ in range(2)]
    with torch.no_grad():
        scale = max(float(model(x).abs().max()) for x in xs)
    assert rewrite.max_abs_diff(model, gm, xs) <= 1e-5 * scale


class _NotRewritable(nn.Module):
    """A max-pool whose input may be negative, and an expand whose result is not consumed by a
    broadcasting add: both must be left alone."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.gc = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        y = self.conv(x)                                       # may be negative
        p = F.max_pool2d(y, 3, 2, 1)
        g = self.gc(p.mean((2, 3), keepdim=True).expand_as(p))  # expand -> conv -> cat (not add)
        return torch.cat([p, g], 1)


def test_rewrites_leave_unprovable_patterns_alone():
    from edgeseg.formats.litert import rewrite

    model = _NotRewritable().eval()
    gm = _exported(model)
    assert rewrite.apply_rewrites(gm) == {"sink_spatial_expand": 0, "zero_pad_nonneg_maxpool": 0, "unpad_conv_transpose": 0,
                      "explicit_pad_shared_input_conv": 0}
    x = torch.randn(1, 3, *SIZE)
    assert rewrite.max_abs_diff(model, gm, [x]) == 0.0


def test_maxpool_zero_pad_needs_a_relu_before_it():
    from edgeseg.formats.litert import rewrite

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(3, 2, 1)).eval()
    gm = _exported(model)
    assert rewrite.zero_pad_nonneg_maxpool(gm) == 1
    xs = [torch.randn(1, 3, *SIZE) * 4 for _ in range(3)]
    assert rewrite.max_abs_diff(model, gm, xs) == 0.0


@pytest.mark.slow
def test_bisenetv1_full_int8_runs_without_broadcast_to_or_padv2(tmp_path):
    """BiSeNetV1's global-context expand used to convert to a BROADCAST_TO that LiteRT refuses
    at allocate_tensors, and its stem max-pool to PADV2 (not on the Edge TPU)."""
    from edgeseg.formats.litert import edgetpu
    from edgeseg.models import create_model

    torch.manual_seed(0)
    model = create_model("bisenetv1", 3).eval()
    calib = [np.random.default_rng(0).standard_normal((1, 3, *SIZE)).astype(np.float32)]
    d = tflite.export(model, CAMVID, input_size=SIZE, precision="int8", out_dir=tmp_path,
                      profile=load_target("coral"), calib=calib).details
    assert d["export_rewrites"]["rewrites"] == {"sink_spatial_expand": 1, "zero_pad_nonneg_maxpool": 1, "unpad_conv_transpose": 0,
                      "explicit_pad_shared_input_conv": 0}
    ops = [op["op"] for op in edgetpu.read_model(tmp_path / "model_int8.tflite")[0]]
    assert "BROADCAST_TO" not in ops and "PADV2" not in ops and "TRANSPOSE" not in ops
    assert "MAX_POOL_2D" in ops
    check = d["edgetpu_check"]
    assert check["ok"] and check["full_integer"] and check["ops_on_cpu"] == 0, check["summary"]
    it = tflite.interpreter_class()(model_path=str(tmp_path / "model_int8.tflite"), num_threads=1)
    it.allocate_tensors()  # the BROADCAST_TO failure was here
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(inp["index"], np.zeros(inp["shape"], np.int8))
    it.invoke()
    # the coral profile's low_res_output "auto": BiSeNet's final resize is left to the runtime
    assert it.get_tensor(out["index"]).shape == (1, SIZE[0] // 8, SIZE[1] // 8, 3)
