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
    assert not has_unpool(create_model("enet", 3, upsample="nearest"))
    assert has_unpool(create_model("enet_unpool", 3))
    with pytest.raises(ModelError):
        create_model("enet", 3, upsample="bicubic")


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


# --- decoder upsampling choices --------------------------------------------------------

# small widths keep each export fast; every choice must keep the output at input size
_UPSAMPLE_CASES = {
    "enet": ({}, ("bilinear", "nearest", "deconv", "unpool")),
    "fcn8s": ({"widths": (8, 8, 16, 16, 16), "fc_channels": 16}, ("deconv", "bilinear", "nearest")),
    "fcn32s": ({"widths": (8, 8, 16, 16, 16), "fc_channels": 16}, ("deconv", "bilinear", "nearest")),
    "unet": ({"base_channels": 4, "depth": 3}, ("deconv", "bilinear", "nearest")),
}


def _onnx_roundtrip(model, sizes, path):
    """Export with dynamic H/W at ``sizes[0]``; ONNX Runtime must match eager at every size."""
    ort = pytest.importorskip("onnxruntime")
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, *sizes[0]),), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w in sizes:
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {"image": x.numpy()})[0]
        assert got.shape == ref.shape == (1, model.num_classes, h, w)
        assert np.abs(got - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("name,upsample", [(n, u) for n, (_, ups) in _UPSAMPLE_CASES.items() for u in ups])
def test_upsample_choice_shape_and_onnx(name, upsample, tmp_path):
    kw, _ = _UPSAMPLE_CASES[name]
    model = _build(name, upsample=upsample, **kw)
    assert model.upsample == upsample
    size = (model.valid_size(32), model.valid_size(64))
    _calibrate_bn(model, torch.randn(2, 3, *size))
    with torch.no_grad():
        assert model(torch.randn(2, 3, *size)).shape == (2, NUM_CLASSES, *size)
    _onnx_roundtrip(model, [size, (size[1], size[0])], tmp_path / f"{name}_{upsample}.onnx")


@pytest.mark.parametrize("name", ["enet", "fcn8s", "fcn16s", "fcn32s", "unet", "unet_valid"])
def test_unknown_upsample_names_valid_choices(name):
    with pytest.raises(ModelError) as exc:
        create_model(name, 3, upsample="pixelshuffle")
    msg = str(exc.value)
    assert "pixelshuffle" in msg
    for choice in ("bilinear", "nearest", "deconv"):
        assert choice in msg


def test_fixed_upsampling_has_no_transposed_convs():
    for name, kw in (("fcn8s", {}), ("unet", {"base_channels": 4})):
        for up in ("bilinear", "nearest"):
            model = create_model(name, 3, upsample=up, **kw)
            assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules()), (name, up)
    # default unchanged: the paper's learned, bilinear-initialised upsampling
    assert any(isinstance(m, nn.ConvTranspose2d) for m in create_model("fcn8s", 3).modules())


# --- segmenter -------------------------------------------------------------------------

_TINY_VIT = {"embed_dim": 48, "depth": 2, "heads": 3, "decoder_depth": 1, "ref_size": (64, 64)}


def test_segmenter_position_embedding_interpolation():
    model = _build("segmenter", **_TINY_VIT).eval()
    assert model.size_divisor == 16 and model.ref_grid == (4, 4)
    pos = model.encoder.pos_embed
    # at the reference grid the resize is the identity (done anyway: no size baked into exports)
    same = nn.functional.interpolate(pos, size=(4, 4), mode="bilinear", align_corners=False)
    assert torch.allclose(same, pos, atol=1e-6)
    for h, w in ((32, 96), (112, 48)):  # grids 2x6 and 7x3, neither the reference 4x4
        with torch.no_grad():
            y = model(torch.randn(2, 3, h, w))
        assert y.shape == (2, NUM_CLASSES, h, w) and torch.isfinite(y).all()
    # the position embeddings are used at other grids: changing them changes the output
    x = torch.randn(1, 3, 32, 96)
    with torch.no_grad():
        before = model(x)
        pos.add_(torch.randn_like(pos))
        assert not torch.allclose(model(x), before)


@pytest.mark.parametrize("decoder,patch_size", [("linear", 16), ("mask", 8), ("linear", 8)])
def test_segmenter_decoders_and_patch_sizes(decoder, patch_size):
    model = _build("segmenter", decoder=decoder, patch_size=patch_size, **_TINY_VIT).train()
    assert model.size_divisor == patch_size
    h, w = 3 * patch_size, 5 * patch_size
    out = model(torch.randn(2, 3, h, w))
    assert out.shape == (2, NUM_CLASSES, h, w)
    nn.functional.cross_entropy(out, torch.randint(0, NUM_CLASSES, (2, h, w))).backward()
    assert model.encoder.patch_embed.weight.grad.abs().sum() > 0
    assert model.encoder.pos_embed.grad.abs().sum() > 0
    with pytest.raises(InputSizeError):
        model(torch.randn(1, 3, h + patch_size // 2, w))


def test_segmenter_linear_is_smaller_than_mask():
    mask = create_model("segmenter", NUM_CLASSES, **_TINY_VIT)
    linear = create_model("segmenter", NUM_CLASSES, decoder="linear", **_TINY_VIT)
    assert count_params(linear) < count_params(mask)
    from edgeseg.models.segmenter import Attention

    assert any(isinstance(m, Attention) for m in mask.decoder.modules())
    assert not any(isinstance(m, Attention) for m in linear.decoder.modules())


@pytest.mark.parametrize("decoder", ["mask", "linear"])
def test_segmenter_onnx_dynamic_size(decoder, tmp_path):
    model = _build("segmenter", decoder=decoder, **_TINY_VIT)
    # exported at the reference size; run at grids of other sizes and aspect ratios
    _onnx_roundtrip(model, [(64, 64), (32, 96), (112, 48)], tmp_path / f"segmenter_{decoder}.onnx")


def test_segmenter_bad_options():
    for kw in ({"decoder": "conv"}, {"patch_size": 14}, {"embed_dim": 50}, {"ref_size": (100, 64)}):
        with pytest.raises(ModelError):
            create_model("segmenter", 3, **kw)


def test_dabnet_layout():
    """DABNet as in its paper (0.76 M params for Cityscapes' 19 classes); its 3x1 / 1x3
    depthwise convs dilate only along their long axis (a dilation on the 1-wide axis gave
    non-finite weight gradients in oneDNN's bf16 channels-last backward)."""
    model = create_model("dabnet", 19)
    assert round(count_params(model) / 1e6, 2) == 0.76
    asym = [m for m in model.modules() if isinstance(m, nn.Conv2d) and sorted(m.kernel_size) == [1, 3]]
    assert len(asym) == 4 * 9  # four per DAB module, 3 + 6 modules
    for m in asym:
        for k, d in zip(m.kernel_size, m.dilation):
            assert k > 1 or d == 1
    assert sorted({max(m.dilation) for m in asym}) == [1, 2, 4, 8, 16]
