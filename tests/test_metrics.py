import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist, directed_hausdorff
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, jaccard_score

from edgeseg.errors import ConfigError, DataError
from edgeseg.metrics import (
    BoundaryF1,
    ConfusionMatrix,
    assd,
    boundary_f1,
    hausdorff95,
    hausdorff_distance,
    surface_distances,
)
from scipy import ndimage

# ---------------------------------------------------------------------------
# confusion matrix: hand cases
# ---------------------------------------------------------------------------


def test_hand_case_2x3():
    target = np.array([[0, 1, 2],
                       [2, 255, 0]])
    pred = np.array([[0, 1, 1],
                     [2, 2, 0]])
    cm = ConfusionMatrix(3).update(pred, target)
    # rows = gt, cols = pred; the ignored pixel (gt 255, pred 2) is skipped
    np.testing.assert_array_equal(cm.matrix, [[2, 0, 0], [0, 1, 0], [0, 1, 1]])
    assert cm.matrix.dtype == np.int64
    r = cm.compute()
    # class 0: tp 2, fp 0, fn 0 -> IoU 1
    # class 1: tp 1, fp 1 (gt 2 predicted 1), fn 0 -> 1/2
    # class 2: tp 1, fp 0, fn 1 -> 1/2
    assert r["per_class_iou"] == pytest.approx([1.0, 0.5, 0.5])
    assert r["miou"] == pytest.approx(2 / 3)
    assert r["pixel_accuracy"] == pytest.approx(4 / 5)
    assert r["per_class_accuracy"] == pytest.approx([1.0, 1.0, 0.5])
    assert r["mean_class_accuracy"] == pytest.approx(2.5 / 3)
    assert r["per_class_dice"] == pytest.approx([1.0, 2 / 3, 2 / 3])
    # gt frequencies 2/5, 1/5, 2/5
    assert r["fw_iou"] == pytest.approx(0.4 * 1 + 0.2 * 0.5 + 0.4 * 0.5)


def test_absent_class_is_nan_and_skipped_in_mean():
    target = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 1], [1, 1]])
    r = ConfusionMatrix(4).compute()  # empty
    assert math.isnan(r["miou"]) and math.isnan(r["pixel_accuracy"]) and math.isnan(r["fw_iou"])
    r = ConfusionMatrix(4).update(pred, target).compute()
    iou = r["per_class_iou"]
    assert iou[0] == pytest.approx(1 / 2)
    assert iou[1] == pytest.approx(2 / 3)
    assert math.isnan(iou[2]) and math.isnan(iou[3])
    assert r["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert math.isnan(r["per_class_accuracy"][2])
    assert math.isnan(r["per_class_dice"][3])


def test_class_only_in_prediction_has_iou_zero():
    target = np.array([0, 0, 0, 0])
    pred = np.array([0, 0, 0, 2])
    r = ConfusionMatrix(3).update(pred, target).compute()
    assert r["per_class_iou"][2] == 0.0
    assert math.isnan(r["per_class_iou"][1])
    assert math.isnan(r["per_class_accuracy"][2])  # no gt pixels: recall undefined
    assert r["miou"] == pytest.approx((3 / 4 + 0) / 2)


def test_ignore_handling_and_custom_ignore_index():
    target = np.array([[255, 255], [1, 0]])
    pred = np.array([[1, 7], [1, 0]])  # pred out of range only at an ignored pixel: fine
    cm = ConfusionMatrix(2).update(pred, target)
    assert cm.total == 2
    assert cm.compute()["pixel_accuracy"] == 1.0
    cm = ConfusionMatrix(2, ignore_index=-1).update(np.array([0, 1, 1]), np.array([0, -1, 1]))
    np.testing.assert_array_equal(cm.matrix, [[1, 0], [0, 1]])
    # everything ignored
    cm = ConfusionMatrix(2).update(np.zeros((2, 2), int), np.full((2, 2), 255))
    assert cm.total == 0


def test_errors():
    cm = ConfusionMatrix(3)
    with pytest.raises(DataError, match="pred"):
        cm.update(np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(DataError, match="target"):
        cm.update(np.array([0, 1]), np.array([0, 5]))
    with pytest.raises(DataError, match="shape"):
        cm.update(np.zeros((2, 3), int), np.zeros((3, 2), int))
    with pytest.raises(DataError):
        cm.update(np.array([0.5, 1.0]), np.array([0, 1]))
    with pytest.raises(ConfigError):
        ConfusionMatrix(0)
    with pytest.raises(ConfigError):
        cm.merge(ConfusionMatrix(4))
    with pytest.raises(ConfigError):
        cm.summary(["a", "b"])
    assert cm.total == 0  # failed updates left no partial counts


def test_torch_inputs_logits_merge_reset():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=g)
    target = torch.randint(0, 4, (2, 5, 6), generator=g)
    a = ConfusionMatrix(4).update(logits, target)  # argmax over the class axis
    b = ConfusionMatrix(4).update(logits.argmax(1), target.numpy())
    np.testing.assert_array_equal(a.matrix, b.matrix)
    # unbatched C x H x W with H x W target
    c = ConfusionMatrix(4).update(logits[0].numpy(), target[0])
    d = ConfusionMatrix(4).update(logits[0].argmax(0), target[0])
    np.testing.assert_array_equal(c.matrix, d.matrix)
    # merging per-image matrices == one update over the batch
    e = ConfusionMatrix(4).update(logits[0:1], target[0:1])
    e.merge(ConfusionMatrix(4).update(logits[1:2], target[1:2]))
    np.testing.assert_array_equal(e.matrix, a.matrix)
    e += ConfusionMatrix(4)
    np.testing.assert_array_equal(e.matrix, a.matrix)
    e.reset()
    assert e.total == 0


def test_summary_is_json_able_with_none_for_nan():
    cm = ConfusionMatrix(3).update(np.array([0, 1, 1]), np.array([0, 1, 0]))
    s = cm.summary(["road", "car", "sky"])
    text = json.dumps(s, allow_nan=False)
    assert json.loads(text) == s
    assert s["per_class_iou"]["sky"] is None
    assert s["per_class_iou"]["road"] == pytest.approx(0.5)
    assert s["per_class_iou"]["car"] == pytest.approx(0.5)
    assert s["miou"] == pytest.approx(0.5)
    assert s["num_pixels"] == 3
    assert set(ConfusionMatrix(2).summary()["per_class_iou"]) == {"0", "1"}


# ---------------------------------------------------------------------------
# confusion matrix vs scikit-learn on random data
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    C = 5
    target = rng.integers(0, C, size=(3, 17, 19))
    target[rng.random(target.shape) < 0.1] = 255
    # make class 4 rare in predictions, and the predictions partly correct
    pred = np.where(rng.random(target.shape) < 0.6, np.clip(target, 0, C - 1), rng.integers(0, C - 1, size=target.shape))
    cm = ConfusionMatrix(C)
    for p, t in zip(pred, target):  # accumulate image by image
        cm.update(p, t)
    valid = target != 255
    y, yh = target[valid], pred[valid]
    labels = list(range(C))
    np.testing.assert_array_equal(cm.matrix, confusion_matrix(y, yh, labels=labels))
    r = cm.compute()
    np.testing.assert_allclose(r["per_class_iou"], jaccard_score(y, yh, labels=labels, average=None))
    assert r["pixel_accuracy"] == pytest.approx(accuracy_score(y, yh))
    np.testing.assert_allclose(r["per_class_dice"], f1_score(y, yh, labels=labels, average=None))
    np.testing.assert_allclose(r["per_class_accuracy"], np.diag(confusion_matrix(y, yh, labels=labels, normalize="true")))
    weights = np.bincount(y, minlength=C)
    assert r["fw_iou"] == pytest.approx(jaccard_score(y, yh, labels=labels, average="weighted"))
    assert r["fw_iou"] == pytest.approx(np.sum(weights / weights.sum() * np.array(r["per_class_iou"])))
    assert r["miou"] == pytest.approx(jaccard_score(y, yh, labels=labels, average="macro"))


def test_large_update_is_fast():
    import time

    rng = np.random.default_rng(0)
    t = rng.integers(0, 19, size=(4, 512, 1024))
    p = rng.integers(0, 19, size=(4, 512, 1024))
    cm = ConfusionMatrix(19)
    start = time.perf_counter()
    cm.update(p, t)
    assert time.perf_counter() - start < 2.0
    assert cm.total == t.size


# ---------------------------------------------------------------------------
# boundary F1
# ---------------------------------------------------------------------------


def _square_map(shape=(32, 32), top=8, left=8, size=12, cls=1):
    m = np.zeros(shape, dtype=np.int64)
    m[top:top + size, left:left + size] = cls
    return m


def test_boundary_f1_identical_is_one():
    t = _square_map()
    t[20:30, 2:6] = 2
    assert boundary_f1(t, t) == 1.0
    assert boundary_f1(torch.from_numpy(t), torch.from_numpy(t), num_classes=3) == 1.0
    # a single-class image has no boundary in either map
    z = np.zeros((8, 8), int)
    assert boundary_f1(z, z) == 1.0


def test_boundary_f1_shift_within_and_beyond_tolerance():
    t = _square_map()
    shifted2 = _square_map(left=10)
    shifted6 = _square_map(left=14)
    assert boundary_f1(shifted2, t, tolerance=2) == pytest.approx(1.0)
    s_small = boundary_f1(shifted2, t, tolerance=1)
    s_large = boundary_f1(shifted6, t, tolerance=1)
    assert s_small < 1.0
    assert s_large < s_small
    assert boundary_f1(shifted6, t, tolerance=0) < 1.0


def test_boundary_f1_missing_class_scores_zero_and_ignore():
    t = _square_map()
    p = np.zeros_like(t)  # the square was missed entirely
    # class 0 has a boundary in gt only -> 0, class 1 likewise -> 0
    assert boundary_f1(p, t) == 0.0
    # ignoring the square's area makes both maps identical on the valid region
    t_ign = t.copy()
    t_ign[t == 1] = 255
    assert boundary_f1(p, t_ign) == 1.0
    assert math.isnan(boundary_f1(p, np.full_like(t, 255)))


def test_boundary_f1_batch_and_meter():
    t = np.stack([_square_map(), _square_map()])
    p = np.stack([_square_map(), _square_map(left=14)])
    per = boundary_f1(p, t, tolerance=1, reduce="none")
    assert per.shape == (2,) and per[0] == 1.0 and per[1] < 1.0
    assert boundary_f1(p, t, tolerance=1) == pytest.approx(per.mean())
    meter = BoundaryF1(tolerance=1)
    meter.update(p[0], t[0])
    meter.update(p[1:], t[1:])
    meter.update(p[0], np.full_like(t[0], 255))  # NaN image is skipped
    assert meter.compute() == pytest.approx(per.mean())
    meter.reset()
    assert math.isnan(meter.compute())
    with pytest.raises(DataError):
        boundary_f1(np.full((4, 4), 5), np.zeros((4, 4), int), num_classes=3)


# ---------------------------------------------------------------------------
# Hausdorff / ASSD
# ---------------------------------------------------------------------------


def _surface_points(mask):
    surf = mask & ~ndimage.binary_erosion(mask, ndimage.generate_binary_structure(mask.ndim, 1), border_value=0)
    return np.argwhere(surf).astype(float)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_hausdorff_squares_offset_by_k(k):
    a = np.zeros((40, 40), bool)
    a[10:20, 10:20] = True
    b = np.zeros_like(a)
    b[10:20, 10 + k:20 + k] = True
    assert hausdorff_distance(a, b) == pytest.approx(k)
    assert hausdorff_distance(b, a) == pytest.approx(k)
    # diagonal offset: every surface pixel is at least... the max is the diagonal k*sqrt(2)
    c = np.zeros_like(a)
    c[10 + k:20 + k, 10 + k:20 + k] = True
    assert hausdorff_distance(a, c) == pytest.approx(k * math.sqrt(2))
    assert hausdorff95(a, b) <= k + 1e-9
    assert hausdorff95(a, a) == 0.0 and assd(a, a) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_hausdorff_and_assd_against_scipy(seed):
    rng = np.random.default_rng(seed)
    a = ndimage.binary_opening(rng.random((30, 35)) < 0.45, iterations=1)
    b = ndimage.binary_opening(rng.random((30, 35)) < 0.45, iterations=1)
    assert a.any() and b.any()
    pa, pb = _surface_points(a), _surface_points(b)
    hd = max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])
    assert hausdorff_distance(a, b) == pytest.approx(hd)
    d = cdist(pa, pb)
    d_ab, d_ba = d.min(1), d.min(0)
    pooled = np.concatenate([d_ab, d_ba])
    assert hausdorff95(a, b) == pytest.approx(np.percentile(pooled, 95))
    assert assd(a, b) == pytest.approx(pooled.mean())
    s1, s2 = surface_distances(a, b)
    np.testing.assert_allclose(np.sort(s1), np.sort(d_ab))
    np.testing.assert_allclose(np.sort(s2), np.sort(d_ba))


def test_spacing_3d_and_torch_inputs():
    a = np.zeros((6, 20, 20), bool)
    a[1:5, 5:10, 5:10] = True
    b = np.zeros_like(a)
    b[1:5, 5:10, 8:13] = True
    assert hausdorff_distance(a, b) == pytest.approx(3)
    assert hausdorff_distance(a, b, spacing=(2.0, 1.0, 0.5)) == pytest.approx(1.5)
    assert hausdorff_distance(a, b, spacing=2.0) == pytest.approx(6)
    assert hausdorff95(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(hausdorff95(a, b))
    pa, pb = _surface_points(a) * [2.0, 1.0, 0.5], _surface_points(b) * [2.0, 1.0, 0.5]
    d = cdist(pa, pb)
    assert assd(a, b, spacing=(2.0, 1.0, 0.5)) == pytest.approx(np.concatenate([d.min(1), d.min(0)]).mean())


def test_empty_masks():
    e = np.zeros((10, 10), bool)
    f = e.copy()
    f[2:5, 2:5] = True
    assert math.isnan(hausdorff95(e, e)) and math.isnan(assd(e, e))
    assert hausdorff95(e, f) == math.inf and hausdorff95(f, e) == math.inf
    assert assd(e, f) == math.inf and assd(f, e) == math.inf
    with pytest.raises(DataError):
        hausdorff95(e, np.zeros((3, 3), bool))
