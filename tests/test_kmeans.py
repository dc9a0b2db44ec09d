"""k-means clustering baseline: planted regions, position features, majority-vote scoring."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from edgeseg.classical import evaluate_kmeans, kmeans_segment, map_clusters_to_classes
from edgeseg.data import CAMVID, open_dataset
from edgeseg.errors import ConfigError, DataError


def _planted(colors, widths, h=30, noise=8, seed=0):
    """Vertical strips of flat colours + Gaussian noise; returns (image, strip ids)."""
    rng = np.random.default_rng(seed)
    truth = np.concatenate([np.full((h, wd), i) for i, wd in enumerate(widths)], axis=1)
    image = np.asarray(colors, np.float64)[truth] + rng.normal(0, noise, truth.shape + (3,))
    return np.clip(image, 0, 255).astype(np.uint8), truth


def _ari(a, b) -> float:
    return adjusted_rand_score(np.ravel(a), np.ravel(b))


@pytest.mark.parametrize("color_space", ["lab", "rgb"])
def test_recovers_planted_colour_regions(color_space):
    image, truth = _planted([(200, 40, 40), (40, 180, 60), (50, 60, 210)], [20, 15, 25])
    labels = kmeans_segment(image, 3, color_space=color_space)
    assert labels.shape == truth.shape and labels.dtype == np.int32
    assert set(np.unique(labels)) == {0, 1, 2}
    assert _ari(labels, truth) == pytest.approx(1.0)
    # ids are numbered by decreasing cluster size: the 25-wide blue strip is cluster 0
    assert np.all(labels[:, -1] == 0)
    # the oracle mapping then scores a perfect partition as mIoU 1
    mapped = map_clusters_to_classes(labels, truth.astype(np.uint8), 3)
    assert np.array_equal(mapped, truth)


def test_subsampled_fit_assigns_every_pixel_and_is_deterministic():
    image, truth = _planted([(220, 220, 220), (30, 30, 30)], [40, 40], h=40, noise=10, seed=1)
    a = kmeans_segment(image, 2, max_fit_pixels=200, seed=3)
    b = kmeans_segment(image, 2, max_fit_pixels=200, seed=3)
    assert np.array_equal(a, b)
    assert _ari(a, truth) == pytest.approx(1.0)


def test_position_features_split_same_coloured_regions():
    # red | green | red: colour alone cannot tell the two red strips apart, so a third
    # cluster splits a colour by noise; with position the reds separate left/right.
    image, truth = _planted([(200, 40, 40), (40, 180, 60), (200, 40, 40)], [25, 14, 25],
                            h=24, noise=10, seed=2)
    colour_only = kmeans_segment(image, 3, attempts=2)
    with_pos = kmeans_segment(image, 3, use_position=True, position_weight=2.0, attempts=2)
    assert _ari(with_pos, truth) > 0.95
    assert _ari(colour_only, truth) < 0.7
    # the two red strips share a cluster without position...
    left, right = colour_only[:, :25], colour_only[:, -25:]
    assert len(set(np.unique(left)) & set(np.unique(right))) > 0
    # ...and never with it
    assert not set(np.unique(with_pos[:, :25])) & set(np.unique(with_pos[:, -25:]))


def test_majority_vote_mapping_by_hand():
    clusters = np.array([[0, 0, 1, 1],
                         [0, 2, 1, 3],
                         [2, 2, 3, 3]])
    gt = np.array([[4, 4, 1, 255],
                   [5, 255, 1, 255],
                   [255, 255, 255, 255]], dtype=np.uint8)
    mapped = map_clusters_to_classes(clusters, gt, num_classes=6)
    # cluster 0: classes 4, 4, 5 -> 4; cluster 1: 1, 1 (one ignored pixel does not vote) -> 1;
    # clusters 2 and 3: only ignored pixels -> ignore
    expected = np.array([[4, 4, 1, 1],
                         [4, 255, 1, 255],
                         [255, 255, 255, 255]])
    assert np.array_equal(mapped, expected)
    # ties go to the lowest class id; a custom ignore index
    tie = map_clusters_to_classes(np.zeros((1, 4), int), np.array([[3, 2, 3, 2]]), 4, ignore_index=9)
    assert np.array_equal(tie, [[2, 2, 2, 2]])
    all_ignored = map_clusters_to_classes(np.zeros((2, 2), int), np.full((2, 2), 9), 4, ignore_index=9)
    assert np.all(all_ignored == 9)


def test_mapping_rejects_bad_inputs():
    with pytest.raises(DataError, match="shape"):
        map_clusters_to_classes(np.zeros((2, 2), int), np.zeros((2, 3), np.uint8), 3)
    with pytest.raises(DataError, match="outside 0..2"):
        map_clusters_to_classes(np.zeros((2, 2), int), np.full((2, 2), 7, np.uint8), 3)
    with pytest.raises(DataError, match="integer"):
        map_clusters_to_classes(np.zeros((2, 2)), np.zeros((2, 2), np.uint8), 3)


def test_evaluate_kmeans_on_generated_camvid(tiny_camvid):
    ds = open_dataset(tiny_camvid, "val")
    r = evaluate_kmeans(ds, 6, limit=2)
    assert r["images"] == 2 and r["k"] == 6
    assert 0.0 <= r["miou"] <= 1.0 and 0.0 <= r["pixel_accuracy"] <= 1.0
    assert list(r["per_class_iou"]) == list(CAMVID.classes)
    assert r["ms_per_image"] > 0
    assert "oracle" in r["evaluation"]
    # the generated images are class colours + noise: the clustering is nearly perfect
    assert r["pixel_accuracy"] > 0.9
    rp = evaluate_kmeans(ds, 6, use_position=True, limit=1)
    assert rp["images"] == 1 and 0.0 <= rp["miou"] <= 1.0


@pytest.mark.parametrize("k", [0, 1, -3, 2.5, True, "3", 5])
def test_bad_k_is_a_config_error(k):
    image = np.zeros((2, 2, 3), np.uint8)  # 4 pixels: k=5 is too many
    with pytest.raises(ConfigError, match="k"):
        kmeans_segment(image, k)


def test_bad_options_and_images():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ConfigError, match="color_space"):
        kmeans_segment(image, 2, color_space="hsv")
    with pytest.raises(ConfigError, match="position_weight"):
        kmeans_segment(image, 2, use_position=True, position_weight=-1)
    with pytest.raises(ConfigError, match="max_fit_pixels"):
        kmeans_segment(image, 4, max_fit_pixels=3)  # fewer fitted pixels than k
    with pytest.raises(ConfigError, match="max_fit_pixels"):
        kmeans_segment(image, 5, max_fit_pixels=4)
    with pytest.raises(DataError, match="uint8"):
        kmeans_segment(image.astype(np.float32), 2)
    with pytest.raises(DataError, match="HxWx3"):
        kmeans_segment(image[..., 0], 2)
    with pytest.raises(ConfigError, match="limit"):
        evaluate_kmeans(_FakeDataset(), 2, limit=0)


class _FakeDataset:
    info = CAMVID

    def __len__(self):
        return 1

    def read(self, i):
        return np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)
