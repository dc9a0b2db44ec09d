"""Inference modes: whole image, sliding window, TTA, shift-and-stitch, infer_image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.data.info import DatasetInfo
from edgeseg.errors import ConfigError
from edgeseg.inference import (
    StridedOutput,
    blend_window,
    infer,
    infer_image,
    predict_logits,
    shift_and_stitch,
    sliding_window,
    tile_starts,
    tta,
)
from edgeseg.models.base import SegmentationModel
from edgeseg.models.registry import create_model
from edgeseg.predict import predict_image

H, W = 64, 96


class ConvModel(SegmentationModel):
    """Toy model of ``layers`` convs with kernel ``k`` (zero padding, size_divisor 1)."""

    size_divisor = 1

    def __init__(self, num_classes=4, k=1, layers=1, seed=0):
        super().__init__(num_classes)
        g = torch.Generator().manual_seed(seed)
        chans = [3] + [6] * (layers - 1) + [num_classes]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, k, padding=k // 2) for a, b in zip(chans, chans[1:]))
        with torch.no_grad():
            for c in self.convs:
                c.weight.copy_(torch.randn(c.weight.shape, generator=g) * 0.5)
                c.bias.copy_(torch.randn(c.bias.shape, generator=g) * 0.5)
        self.radius = (k // 2) * layers  # receptive-field radius

    def forward_features(self, x):
        for i, c in enumerate(self.convs):
            x = c(x) if i == 0 else c(torch.tanh(x))
        return x


def _x(n=1, h=H, w=W, seed=0):
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def enet():
    torch.manual_seed(0)
    return create_model("enet", 5).eval()


@pytest.fixture(scope="module")
def pix():
    return ConvModel(4, k=1).eval()


# --- predict_logits ---------------------------------------------------------------------

def test_predict_logits_pads_and_crops(enet):
    x = _x(h=60, w=90)
    out = predict_logits(enet, x)
    assert out.shape == (1, 5, 60, 90)
    with torch.no_grad():
        ref = enet(F.pad(x, (0, 6, 0, 4)))[..., :60, :90]
    torch.testing.assert_close(out, ref)


def test_training_mode_is_restored():
    m = ConvModel(3).train()
    infer(m, _x(), mode="tta", scales=(1.0,))
    assert m.training


# --- sliding window -----------------------------------------------------------------------

def test_tile_starts_cover_and_align():
    assert tile_starts(96, 32, 21) == [0, 21, 42, 63, 64]
    assert tile_starts(20, 32, 16) == [0]
    assert tile_starts(64, 32, 32) == [0, 32]


@pytest.mark.parametrize("blend", ["gaussian", "mean"])
@pytest.mark.parametrize("opts", [dict(tile=(32, 48)), dict(tile=24, overlap=0.5), dict(tile=(40, 40), stride=(13, 29)),
                                  dict(tile=(16, 32), overlap=0.0)])
def test_sliding_window_equals_whole_for_pixelwise_model(pix, blend, opts):
    x = _x(n=2)
    whole = predict_logits(pix, x).softmax(1)
    opts = dict(opts)
    out = sliding_window(pix, x, opts.pop("tile"), blend=blend, batch_size=3, **opts)
    assert out.shape == x.shape[:1] + (4,) + x.shape[2:]
    torch.testing.assert_close(out, whole, atol=1e-5, rtol=1e-5)


def test_sliding_window_image_smaller_than_tile(pix, enet):
    x = _x(h=20, w=30)
    out = sliding_window(pix, x, (32, 48))
    torch.testing.assert_close(out, predict_logits(pix, x).softmax(1), atol=1e-5, rtol=1e-5)
    out = sliding_window(enet, _x(h=21, w=70), (32, 32), overlap=0.25)
    assert out.shape == (1, 5, 21, 70)
    torch.testing.assert_close(out.sum(1), torch.ones(1, 21, 70))


def test_sliding_window_interior_agrees_for_local_model():
    """A model whose receptive field has radius r: pixels at least r from every internal
    tile edge of every tile covering them must equal the whole-image output exactly."""
    m = ConvModel(3, k=3, layers=2).eval()
    r, (th, tw), stride = m.radius, (24, 32), (12, 16)
    x = _x()
    whole = predict_logits(m, x).softmax(1)
    out = sliding_window(m, x, (th, tw), stride=stride, blend="gaussian")
    bad = torch.zeros(H, W, dtype=torch.bool)
    for y in tile_starts(H, th, stride[0]):
        for x0 in tile_starts(W, tw, stride[1]):
            band = torch.ones(th, tw, dtype=torch.bool)
            band[r if y > 0 else 0: th - r if y + th < H else th,
                 r if x0 > 0 else 0: tw - r if x0 + tw < W else tw] = False
            bad[y:y + th, x0:x0 + tw] |= band
    good = ~bad
    assert good.float().mean() > 0.3
    torch.testing.assert_close(out[..., good], whole[..., good], atol=1e-5, rtol=1e-5)
    assert (out - whole).abs().max() > 1e-4  # the tile edges do differ: the mask matters


def test_sliding_window_on_enet(enet):
    x = _x()
    out = sliding_window(enet, x, (32, 48), overlap=0.5)
    assert out.shape == (1, 5, H, W)
    torch.testing.assert_close(out.sum(1), torch.ones(1, H, W))
    # one tile covering the whole image is the whole-image prediction
    torch.testing.assert_close(sliding_window(enet, x, (H, W)), predict_logits(enet, x).softmax(1))


def test_blend_window():
    g = blend_window((16, 24), "gaussian")
    assert g.shape == (16, 24) and g.min() > 0 and g.max() == pytest.approx(1.0, abs=1e-3)
    assert g[8, 12] > g[0, 0] and g[8, 12] > g[8, 0]
    assert torch.equal(blend_window((4, 5), "mean"), torch.ones(4, 5))


def test_invalid_tile_names_a_valid_one(enet):
    with pytest.raises(ConfigError, match=r"tile 30x50 .*use tile 32x48"):
        sliding_window(enet, _x(), (30, 50))
    u = create_model("unet", 5, base_channels=4)
    with pytest.raises(ConfigError, match=r"multiples of 16.*use tile 16x48"):
        sliding_window(u, _x(), (20, 44))


@pytest.mark.parametrize("kw, msg", [
    (dict(overlap=1.0), "overlap"), (dict(overlap=-0.1), "overlap"), (dict(overlap="lots"), "overlap"),
    (dict(stride=(40, 8)), "larger than the tile"), (dict(stride=0), "stride"),
    (dict(stride=8, overlap=0.5), "not both"), (dict(blend="cosine"), "blend"), (dict(batch_size=0), "batch_size"),
])
def test_sliding_window_bad_options(pix, kw, msg):
    with pytest.raises(ConfigError, match=msg):
        sliding_window(pix, _x(), (32, 32), **kw)


# --- TTA -------------------------------------------------------------------------------

def test_tta_shape_and_probabilities(enet):
    x = _x(h=60, w=90)
    out = tta(enet, x)
    assert out.shape == (1, 5, 60, 90)
    torch.testing.assert_close(out.sum(1), torch.ones(1, 60, 90))
    out = tta(enet, x, scales=(0.5, 1.0), flip=False, combine="max")
    torch.testing.assert_close(out.sum(1), torch.ones(1, 60, 90))


def test_tta_flip_symmetry_generic_model(enet):
    x = _x()
    # one unresized scale: exact (the flip branch makes the average mirror-symmetric)
    assert torch.equal(tta(enet, x.flip(-1), scales=(1.0,)), tta(enet, x, scales=(1.0,)).flip(-1))
    # symmetric multi-scale: equal up to the rounding of the bilinear resizes
    a = tta(enet, x.flip(-1), scales=(0.75, 1.0, 1.25))
    b = tta(enet, x, scales=(0.75, 1.0, 1.25)).flip(-1)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # without flip TTA a generic (non-equivariant) model is not symmetric
    assert not torch.allclose(tta(enet, x.flip(-1), flip=False, scales=(1.0,)),
                              tta(enet, x, flip=False, scales=(1.0,)).flip(-1), atol=1e-4)


def test_tta_flip_equivariant_model(pix):
    x = _x()
    for flip in (False, True):
        a = tta(pix, x.flip(-1), flip=flip)
        b = tta(pix, x, flip=flip).flip(-1)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # for an equivariant model the flip branch adds nothing
    torch.testing.assert_close(tta(pix, x, flip=True), tta(pix, x, flip=False), atol=1e-5, rtol=1e-5)
    # scale 1 without flip is the whole-image prediction
    torch.testing.assert_close(tta(pix, x, scales=(1.0,), flip=False), predict_logits(pix, x).softmax(1))


def test_tta_with_tiles(enet):
    out = tta(enet, _x(), scales=(1.0, 1.5), tile=(32, 48), overlap=0.25, blend="mean")
    assert out.shape == (1, 5, H, W)
    torch.testing.assert_close(out.sum(1), torch.ones(1, H, W))


@pytest.mark.parametrize("kw, msg", [
    (dict(scales=(0.5, 0.0)), "scales"), (dict(scales=(-1.0,)), "scales"), (dict(scales=()), "scales"),
    (dict(scales=("big",)), "scales"), (dict(combine="median"), "combine"), (dict(overlap=0.5), "need tile"),
])
def test_tta_bad_options(pix, kw, msg):
    with pytest.raises(ConfigError, match=msg):
        tta(pix, _x(), **kw)


# --- shift-and-stitch ----------------------------------------------------------------------

@pytest.mark.parametrize("f", [1, 2, 4])
@pytest.mark.parametrize("size", [(H, W), (30, 45)])
def test_shift_and_stitch_recovers_dense_output(pix, f, size):
    """A coarse net = strided subsampling of a pixelwise net: stitching the f*f shifts
    gives back exactly the dense output."""
    x = _x(n=2, h=size[0], w=size[1])

    def coarse(t):
        return predict_logits(pix, t)[..., ::f, ::f]

    out = shift_and_stitch(coarse, x, f)
    assert out.shape == (2, 4) + size
    assert torch.equal(out, predict_logits(pix, x))
    assert torch.equal(shift_and_stitch(coarse, x, f, batch_size=3), out)


def test_shift_and_stitch_strided_output_pixelwise(pix):
    """StridedOutput average-pools by f; stitched, a pixelwise model gives the stride-1
    f x f box filter of its logits (zero input, i.e. the mean colour, past the border)."""
    f, x = 4, _x()
    out = shift_and_stitch(StridedOutput(pix, f), x, f)
    full = predict_logits(pix, F.pad(x, (0, f - 1, 0, f - 1)))
    torch.testing.assert_close(out, F.avg_pool2d(full, f, stride=1), atol=1e-5, rtol=1e-5)


def test_shift_and_stitch_strided_output_enet(enet):
    coarse = StridedOutput(enet, 2)
    assert coarse(_x()).shape == (1, 5, H // 2, W // 2)
    out = shift_and_stitch(coarse, _x(), 2)
    assert out.shape == (1, 5, H, W)
    # shift (0, 0) lands on the even pixels
    torch.testing.assert_close(out[..., ::2, ::2], coarse(_x()))


def test_shift_and_stitch_bad_factor(pix):
    for f in (0, -2, 1.5, "x"):
        with pytest.raises(ConfigError, match="factor"):
            shift_and_stitch(lambda t: t, _x(), f)
    with pytest.raises(ConfigError, match="factor"):
        StridedOutput(pix, 0)
    with pytest.raises(ConfigError, match="expected 16x24"):
        shift_and_stitch(lambda t: predict_logits(pix, t), _x(), 4)  # not actually strided


# --- infer / infer_image ------------------------------------------------------------------

def test_infer_modes_and_errors(pix):
    x = _x()
    whole = infer(pix, x)
    torch.testing.assert_close(whole, predict_logits(pix, x).softmax(1))
    torch.testing.assert_close(infer(pix, x, mode="tile", tile=(32, 32)), whole, atol=1e-5, rtol=1e-5)
    assert infer(pix, x, mode="tta", scales=(1.0,), flip=False).shape == whole.shape
    with pytest.raises(ConfigError, match="mode"):
        infer(pix, x, mode="fast")
    with pytest.raises(ConfigError, match="needs a tile"):
        infer(pix, x, mode="tile")
    with pytest.raises(ConfigError, match="unknown option.*tile"):
        infer(pix, x, mode="whole", tile=32)


INFO = DatasetInfo(name="toy", classes=tuple("abcde"), colors=((0, 0, 0),) * 5)


@pytest.mark.parametrize("mode, opts", [("whole", {}), ("tile", dict(tile=(32, 48))),
                                        ("tta", dict(scales=(0.75, 1.0)))])
def test_infer_image(enet, mode, opts):
    img = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    classes, probs = infer_image(enet, INFO, img, mode=mode, **opts)
    assert classes.shape == (50, 70) and classes.dtype == np.uint8
    assert probs.shape == (5, 50, 70) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    assert np.array_equal(classes, probs.argmax(0))


def test_infer_image_whole_matches_predict_image(enet):
    img = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)  # no padding needed
    classes, _ = infer_image(enet, INFO, img)
    assert np.array_equal(classes, predict_image(enet, INFO, img))
