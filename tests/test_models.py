"""Registry-driven model tests: every registered model gets the same checks for free
(forward at two sizes, train step with aux outputs, size check, ONNX round trip), plus a
few architecture-specific ones."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from edgeseg.errors import InputSizeError, ModelError
from edgeseg.models import count_macs, count_params, create_model, get_entry, list_models

NUM_CLASSES = 5
ALL_MODELS = list_models()

torch.set_num_threads(2)


def _sizes(model) -> list[tuple[int, int]]:
    """Two small valid sizes for the model (e.g. 64x96 and 96x128 for stride 32)."""
    return [(model.valid_size(64), model.valid_size(96)), (model.valid_size(96), model.valid_size(128))]


def _build(name, **kw):
    torch.manual_seed(0)
    return create_model(name, NUM_CLASSES, **kw)


def _first_conv(model) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


@torch.no_grad()
def _calibrate_bn(model, x):
    """Set BN running stats from one batch, so eval activations stay in a sane range (with
    the init stats, mean 0 var 1, deep nets blow up and parity checks get meaningless)."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch sets the stats exactly
    model(x)
    model.eval()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_registry_entry(name):
    entry = get_entry(name)
    assert "arxiv.org/abs/" in entry.paper
    assert entry.description


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_eval_two_sizes(name):
    model = _build(name).eval()
    for h, w in _sizes(model):
        with torch.no_grad():
            y = model(torch.randn(2, 3, h, w))
        assert isinstance(y, torch.Tensor)
        assert y.shape == (2, NUM_CLASSES, h, w)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_train_step(name):
    model = _build(name).train()
    h, w = _sizes(model)[0]
    out = model(torch.randn(2, 3, h, w))
    outs = out if isinstance(out, tuple) else (out,)
    for o in outs:
        assert o.shape == (2, NUM_CLASSES, h, w)
    target = torch.randint(0, NUM_CLASSES, (2, h, w))
    loss = sum(nn.functional.cross_entropy(o, target) for o in outs)
    loss.backward()
    grad = _first_conv(model).weight.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("name", ALL_MODELS)
def test_invalid_size_names_a_valid_one(name):
    model = _build(name).eval()
    h, w = _sizes(model)[0]
    with pytest.raises(InputSizeError) as exc:
        model(torch.randn(1, 3, h + 1, w))
    pairs = [(int(a), int(b)) for a, b in re.findall(r"(\d+)x(\d+)", str(exc.value))]
    suggested = [p for p in pairs if p != (h + 1, w)]
    assert suggested, str(exc.value)
    for ph, pw in suggested:
        model.check_input_size(ph, pw)  # every suggested size must be accepted


@pytest.mark.parametrize("name", ALL_MODELS)
def test_onnx_export_matches_onnxruntime(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = _build(name)
    (h, w), (h2, w2) = _sizes(model)
    x = torch.randn(1, 3, h, w)
    _calibrate_bn(model, torch.randn(2, 3, h, w))
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-derived constants
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert len(sess.get_outputs()) == 1  # aux heads are not part of the exported graph
    for xx in (x, torch.randn(1, 3, h2, w2)):  # second size: the graph has no baked-in size
        with torch.no_grad():
            ref = model(xx).numpy()
        got = sess.run(None, {"image": xx.numpy()})[0]
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())


# --- registry -------------------------------------------------------------------------

def test_unknown_model_lists_valid_names():
    with pytest.raises(ModelError) as exc:
        create_model("bisenet_v9", 3)
    msg = str(exc.value)
    for name in ALL_MODELS:
        assert name in msg


def test_list_models_pattern():
    assert list_models("fcn*") == ["fcn16s", "fcn32s", "fcn8s"]
    assert {"enet", "enet_unpool", "bisenetv2", "deeplabv3plus_mobilenetv2", "unet", "unet_valid"} <= set(ALL_MODELS)


# --- architecture-specific -------------------------------------------------------------

def test_deeplab_output_stride():
    x = torch.randn(1, 3, 64, 96)
    shapes = []
    for os_ in (8, 16):
        model = _build("deeplabv3plus_mobilenetv2", output_stride=os_, width_mult=0.5).eval()
        with torch.no_grad():
            shapes.append(model(x).shape)
        assert model.size_divisor == os_
    assert shapes[0] == shapes[1] == (1, NUM_CLASSES, 64, 96)
    with pytest.raises(ModelError):
        create_model("deeplabv3plus_mobilenetv2", 3, output_stride=4)


def test_deeplab_width_mult_channels_divisible_by_8():
    model = create_model("deeplabv3plus_mobilenetv2", 3, width_mult=0.75)
    for m in model.encoder.modules():
        if isinstance(m, nn.Conv2d):
            assert m.out_channels % 8 == 0


def test_enet_unpool_only_in_paper_variant():
    def has_unpool(m):
        return any(isinstance(mod, nn.MaxUnpool2d) for mod in m.modules())

    assert not has_unpool(create_model("enet", 3))
    assert not has_unpool(create_model("enet", 3, upsample="deconv"))
    assert has_unpool(create_model("enet_unpool", 3))
    with pytest.raises(ModelError):
        create_model("enet", 3, upsample="nearest")


def test_enet_deconv_option_forward():
    model = _build("enet", upsample="deconv").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 96)).shape == (1, NUM_CLASSES, 64, 96)


def test_enet_scatter_unpool_matches_max_unpool():
    from edgeseg.models.enet import ScatterMaxUnpool2d

    x = torch.randn(2, 4, 8, 12)
    pooled, idx = nn.functional.max_pool2d(x, 2, return_indices=True)
    assert torch.equal(ScatterMaxUnpool2d()(pooled, idx, (8, 12)), nn.functional.max_unpool2d(pooled, idx, 2))


def test_bisenetv2_eval_tensor_train_tuple():
    model = _build("bisenetv2")
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert isinstance(model(x), torch.Tensor)
    model.train()
    out = model(x)
    assert isinstance(out, tuple) and len(out) == 5


def test_unet_valid_geometry():
    from edgeseg.models.unet import UNet

    pad, crop, skips, min_size = UNet.valid_geometry(4, 16)
    # the paper's tile: 572 in -> 388 out, skip crops 568->392 at the top level
    assert 2 * pad - 2 * crop == 184 and skips[0] * 2 == 568 - 392
    assert min_size == 96
    model = create_model("unet_valid", 2)
    with pytest.raises(InputSizeError, match="96x96"):
        model(torch.randn(1, 3, 80, 80))


@pytest.mark.parametrize("name", [n for n in ALL_MODELS if n != "unet_valid"])
def test_params_and_macs(name):
    model = create_model(name, NUM_CLASSES)
    assert count_params(model) > 0
    h, w = _sizes(model)[0]
    small = count_macs(model, (h, w))
    big = count_macs(model, (2 * h, 2 * w))
    assert small > 0
    assert 3.5 < big / small < 4.5


def test_unet_valid_macs_grow_with_size():
    # the mirrored border adds a fixed margin, so MACs grow by less than 4x
    model = create_model("unet_valid", NUM_CLASSES, base_channels=8)
    small, big = count_macs(model, (96, 96)), count_macs(model, (192, 192))
    assert 1.5 < big / small < 4.0
