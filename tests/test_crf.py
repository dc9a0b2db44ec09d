"""Dense CRF: lattice accuracy, edge snapping, valid distributions, options and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeseg.classical import crf_refine_logits, dense_crf
from edgeseg.classical.crf import _Lattice
from edgeseg.errors import ConfigError, DataError

H, W, EDGE = 40, 64, 28


def _two_colour_case(shift=9, blur=4.0, seed=0):
    """Image with a sharp vertical colour edge at x=EDGE, the true labels, and
    probabilities of a model whose boundary is blurred and shifted right by ``shift``."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((H, W), np.int64)
    truth[:, EDGE:] = 1
    colours = np.array([(190, 60, 50), (40, 70, 200)], np.float64)
    image = np.clip(colours[truth] + rng.normal(0, 6, (H, W, 3)), 0, 255).astype(np.uint8)
    x = np.arange(W, dtype=np.float64)
    p1 = 1.0 / (1.0 + np.exp(-(x - EDGE - shift) / blur))
    p1 = np.broadcast_to(p1, (H, W))
    probs = np.stack([1 - p1, p1]).astype(np.float32)
    return image, truth, probs


def _valid_distribution(q, shape):
    assert q.shape == shape and q.dtype == np.float32
    assert np.all(np.isfinite(q)) and q.min() >= 0
    np.testing.assert_allclose(q.sum(axis=0), 1.0, atol=1e-5)


@pytest.mark.parametrize("d", [2, 5])
def test_lattice_approximates_a_unit_gaussian(d):
    rng = np.random.default_rng(d)
    f = rng.random((300, d)) * 4
    v = (np.sin(f.sum(1, keepdims=True)) + 2).astype(np.float32)
    lat = _Lattice(f)
    approx = (lat.filter(v) / lat.filter(np.ones_like(v))).ravel()
    errs = {}
    for s in (0.75, 1.0, 1.33):
        k = np.exp(-((f[:, None] - f[None]) ** 2).sum(-1) / (2 * s * s))
        errs[s] = np.abs(approx - (k @ v).ravel() / k.sum(1)).mean()
    assert errs[1.0] < 0.05
    assert errs[1.0] < errs[0.75] and errs[1.0] < errs[1.33]


def test_crf_snaps_a_shifted_blurred_boundary_to_the_colour_edge():
    image, truth, probs = _two_colour_case()
    before = (probs.argmax(0) == truth).mean()
    q = dense_crf(probs, image)
    _valid_distribution(q, probs.shape)
    after = (q.argmax(0) == truth).mean()
    assert before < 0.88  # 9 of 64 columns wrong
    assert after > 0.98
    assert after - before > 0.1
    # the spatial kernel alone cannot move the boundary to the colour edge
    spatial = dense_crf(probs, image, compat_bilateral=0)
    assert (spatial.argmax(0) == truth).mean() < after


def test_iterations_zero_returns_the_input():
    image, _, probs = _two_colour_case()
    probs = np.clip(probs, 1e-3, None)
    probs /= probs.sum(0)
    q = dense_crf(probs, image, iterations=0)
    np.testing.assert_allclose(q, probs, rtol=1e-5, atol=1e-6)
    # zero pairwise weights: every iteration gives softmax(-unary) again
    q = dense_crf(probs, image, compat_gaussian=0, compat_bilateral=0)
    np.testing.assert_allclose(q, probs, rtol=1e-5, atol=1e-6)


def test_uniform_image_and_confident_probs_keep_their_argmax():
    rng = np.random.default_rng(1)
    image = np.full((24, 32, 3), 120, np.uint8)
    probs = rng.random((4, 24, 32)).astype(np.float32) * 0.1
    probs[2] += 0.9
    probs /= probs.sum(0)
    q = dense_crf(probs, image)
    _valid_distribution(q, probs.shape)
    assert np.all(q.argmax(0) == 2)
    # confident labels that follow the image's edges stay as they are
    image, truth, _ = _two_colour_case()
    sure = np.where(truth == 0, 0.97, 0.03).astype(np.float32)
    probs = np.stack([sure, 1 - sure])
    assert np.array_equal(dense_crf(probs, image).argmax(0), truth)


def test_potts_equals_its_matrix_and_custom_matrices_run():
    image, truth, probs = _two_colour_case()
    potts = dense_crf(probs, image, iterations=3)
    as_matrix = dense_crf(probs, image, iterations=3, compatibility=1 - np.eye(2))
    np.testing.assert_allclose(potts, as_matrix, atol=1e-4)
    # a learned-style asymmetric matrix runs and gives a distribution
    mu = np.array([[-0.5, 1.2], [0.8, 0.0]], np.float32)
    q = dense_crf(probs, image, iterations=3, compatibility=mu)
    _valid_distribution(q, probs.shape)
    # a zero matrix switches the pairwise term off
    q0 = dense_crf(np.clip(probs, 1e-3, 1), image, compatibility=np.zeros((2, 2)))
    np.testing.assert_allclose(q0.sum(0), 1, atol=1e-5)
    assert np.array_equal(q0.argmax(0), probs.argmax(0))


def test_many_classes_and_downsample():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)
    logits = rng.normal(size=(11, 30, 44)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(0)
    _valid_distribution(dense_crf(probs, image, iterations=2), probs.shape)
    _valid_distribution(dense_crf(probs, image, iterations=2, downsample=2), probs.shape)
    # downsampling still fixes the edge case
    image, truth, probs = _two_colour_case()
    q = dense_crf(probs, image, downsample=2)
    assert (q.argmax(0) == truth).mean() > (probs.argmax(0) == truth).mean() + 0.08


def test_crf_refine_logits_matches_dense_crf():
    image, truth, probs = _two_colour_case()
    logits = torch.from_numpy(np.log(np.stack([probs, probs[::-1].copy()])))  # 2 x 2 x H x W
    images = np.stack([image, image])
    maps = crf_refine_logits(logits, images, iterations=3)
    assert maps.shape == (2, H, W) and maps.dtype == np.int64
    assert np.array_equal(maps[0], dense_crf(probs, image, iterations=3).argmax(0))
    # the same from a list of images and a numpy array
    assert np.array_equal(crf_refine_logits(logits.numpy(), [image, image], iterations=3), maps)
    with pytest.raises(DataError, match="one image per map"):
        crf_refine_logits(logits, [image])


def test_bad_inputs_and_options():
    image, _, probs = _two_colour_case()
    with pytest.raises(DataError, match="HxW"):
        dense_crf(probs[:, :10], image)
    with pytest.raises(DataError, match="CxHxW"):
        dense_crf(probs[0], image)
    with pytest.raises(DataError, match="softmax"):
        dense_crf(probs - 0.5, image)
    with pytest.raises(DataError, match="uint8"):
        dense_crf(probs, image.astype(np.float32))
    with pytest.raises(ConfigError, match="iterations"):
        dense_crf(probs, image, iterations=-1)
    with pytest.raises(ConfigError, match="2x2"):
        dense_crf(probs, image, compatibility=np.eye(3))
    with pytest.raises(ConfigError, match="potts"):
        dense_crf(probs, image, compatibility="pots")
    with pytest.raises(ConfigError, match="srgb"):
        dense_crf(probs, image, srgb=0)
    with pytest.raises(ConfigError, match="downsample"):
        dense_crf(probs, image, downsample=0)
    with pytest.raises(ConfigError, match="backend"):
        dense_crf(probs, image, backend="gpu")


def test_pydensecrf_backend_agrees_when_installed():
    pytest.importorskip("pydensecrf.densecrf")
    image, truth, probs = _two_colour_case()
    q = dense_crf(probs, image, backend="pydensecrf")
    _valid_distribution(q, probs.shape)
    ours = dense_crf(probs, image)
    assert (q.argmax(0) == ours.argmax(0)).mean() > 0.97
    assert (q.argmax(0) == truth).mean() > 0.97
