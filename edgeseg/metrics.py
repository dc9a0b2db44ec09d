"""Segmentation metrics: confusion-matrix scores, boundary F1, surface distances.

* :class:`ConfusionMatrix` accumulates a ``C x C`` int64 matrix (rows = ground
  truth, columns = prediction) with :func:`numpy.bincount` and derives pixel
  accuracy, per-class / mean accuracy, IoU, mIoU, frequency-weighted IoU and
  Dice from it.
* :func:`boundary_f1` is the BF score of Csurka et al. (2013) for label maps;
  :class:`BoundaryF1` averages it over images.
* :func:`hausdorff95`, :func:`hausdorff_distance` and :func:`assd` compare two
  binary masks (2-D or 3-D) through their surfaces.

Inputs may be numpy arrays or torch tensors (moved to the CPU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .errors import ConfigError, DataError

__all__ = [
    "BoundaryF1",
    "ConfusionMatrix",
    "class_map_counts",
    "classes_lost",
    "output_flags",
    "assd",
    "boundary_f1",
    "hausdorff95",
    "hausdorff_distance",
    "surface_distances",
]


def _to_numpy(x) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(x)


def _as_labels(x, what: str) -> np.ndarray:
    """Integer class ids as int64; float arrays are accepted only if integral."""
    a = _to_numpy(x)
    if a.dtype == bool:
        return a.astype(np.int64)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int64, copy=False)
    if np.issubdtype(a.dtype, np.floating):
        if a.size and (not np.all(np.isfinite(a)) or np.any(a != np.round(a))):
            raise DataError(
                f"{what} must hold integer class ids, got non-integral {a.dtype} values "
                "(for logits/probabilities pass an array with a class axis so argmax is taken)"
            )
        return a.astype(np.int64)
    raise DataError(f"{what} must hold integer class ids, got dtype {a.dtype}")


def _nanmean(values: np.ndarray) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _json_float(v) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


# ---------------------------------------------------------------------------
# confusion matrix
# ---------------------------------------------------------------------------


class ConfusionMatrix:
    """Accumulating confusion matrix for semantic segmentation.

    ``matrix[i, j]`` counts pixels of ground-truth class ``i`` predicted as
    ``j`` (int64 numpy ``C x C``). Target pixels equal to ``ignore_index`` are
    skipped.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.matrix[...] = 0

    def update(self, pred, target) -> "ConfusionMatrix":
        """Add a batch. ``pred`` holds class ids with the same shape as
        ``target`` (any shape), or scores/logits with one extra class axis at
        position 1 (``N x C x H x W`` for an ``N x H x W`` target; axis 0 for an
        unbatched ``C x H x W``), reduced by argmax.

        Raises :class:`DataError` on a shape mismatch, on target labels that are
        neither a class id nor ``ignore_index``, or on predicted ids outside
        ``0..C-1`` at counted (non-ignored) pixels.
        """
        t_raw = _to_numpy(target)
        p_raw = _to_numpy(pred)
        if p_raw.ndim == t_raw.ndim + 1 and p_raw.shape[1 if t_raw.ndim >= 3 else 0] == self.num_classes:
            axis = 1 if t_raw.ndim >= 3 else 0
            p_shape = p_raw.shape[:axis] + p_raw.shape[axis + 1:]
            if p_shape == t_raw.shape:
                p_raw = np.argmax(p_raw, axis=axis)
        t = _as_labels(t_raw, "target")
        p = _as_labels(p_raw, "pred")
        if p.shape != t.shape:
            raise DataError(f"pred shape {p.shape} does not match target shape {t.shape}")
        t = t.reshape(-1)
        p = p.reshape(-1)
        valid = t != self.ignore_index
        t = t[valid]
        p = p[valid]
        c = self.num_classes
        if t.size:
            bad_t = (t < 0) | (t >= c)
            if bad_t.any():
                vals = np.unique(t[bad_t])[:10].tolist()
                raise DataError(
                    f"target has label values {vals} outside 0..{c - 1} that are not "
                    f"ignore_index={self.ignore_index}: check the label mapping"
                )
            bad_p = (p < 0) | (p >= c)
            if bad_p.any():
                vals = np.unique(p[bad_p])[:10].tolist()
                raise DataError(
                    f"pred has class ids {vals} outside 0..{c - 1}: the model's "
                    f"num_classes does not match the metric's ({c})"
                )
            self.matrix += np.bincount(t * c + p, minlength=c * c).reshape(c, c)
        return self

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix's counts into this one (e.g. from another worker)."""
        if not isinstance(other, ConfusionMatrix):
            raise ConfigError(f"can only merge a ConfusionMatrix, got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise ConfigError(
                f"cannot merge confusion matrices of {other.num_classes} and {self.num_classes} classes"
            )
        self.matrix += other.matrix
        return self

    def __iadd__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        return self.merge(other)

    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    def compute(self) -> dict:
        """Scores from the accumulated counts.

        Keys: ``pixel_accuracy``, ``mean_class_accuracy``, ``miou``, ``fw_iou``
        (floats) and ``per_class_iou``, ``per_class_accuracy``,
        ``per_class_dice`` (lists of C floats). A per-class value is NaN when
        undefined: IoU/Dice for a class absent from both ground truth and
        prediction, accuracy (recall) for a class absent from the ground truth.
        Means skip NaNs (NaN if nothing is defined, e.g. an empty matrix).
        ``fw_iou = sum_c freq_c * IoU_c`` with ``freq_c`` the ground-truth
        pixel share.
        """
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        gt = m.sum(1)
        pr = m.sum(0)
        total = m.sum()
        iou = _safe_div(tp, gt + pr - tp)
        acc = _safe_div(tp, gt)
        dice = _safe_div(2 * tp, gt + pr)
        if total > 0:
            freq = gt / total
            seen = freq > 0
            fw = float(np.sum(freq[seen] * iou[seen]))
            pixel_acc = float(tp.sum() / total)
        else:
            fw = float("nan")
            pixel_acc = float("nan")
        return {
            "pixel_accuracy": pixel_acc,
            "mean_class_accuracy": _nanmean(acc),
            "miou": _nanmean(iou),
            "fw_iou": fw,
            "per_class_iou": [float(v) for v in iou],
            "per_class_accuracy": [float(v) for v in acc],
            "per_class_dice": [float(v) for v in dice],
        }

    def summary(self, class_names: Sequence[str] | None = None) -> dict:
        """:meth:`compute` as JSON-able values: NaN becomes ``None`` and the
        per-class lists become ``{class name: value}`` dicts (names default to
        ``"0"``, ``"1"``...). Also reports ``num_pixels``."""
        if class_names is None:
            class_names = [str(i) for i in range(self.num_classes)]
        names = [str(n) for n in class_names]
        if len(names) != self.num_classes:
            raise ConfigError(
                f"{len(names)} class names given for a {self.num_classes}-class confusion matrix"
            )
        if len(set(names)) != len(names):
            raise ConfigError("class names must be unique")
        r = self.compute()
        out: dict = {k: _json_float(r[k]) for k in ("pixel_accuracy", "mean_class_accuracy", "miou", "fw_iou")}
        for k in ("per_class_iou", "per_class_accuracy", "per_class_dice"):
            out[k] = {n: _json_float(v) for n, v in zip(names, r[k])}
        out["num_pixels"] = self.total
        return out

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, pixels={self.total})"


def score(pairs, predict, num_classes: int, ignore_index: int, *, label: str | None = None,
          total: int | None = None, on_prediction=None) -> ConfusionMatrix:
    """The one evaluation loop: for each ``(input, mask)`` of ``pairs``, ``predict(input)`` gives a
    class map, which is scored against ``mask`` (``on_prediction(pred, mask)`` sees each one).
    A progress bar named ``label`` shows on a terminal. Every evaluation in edgeseg (training's
    validation, eval, bench's accuracy, parity, compress's runtime scores) runs through it."""
    from edgeseg.progress import track

    cm = ConfusionMatrix(num_classes, ignore_index)
    for x, mask in (track(pairs, label, total) if label else pairs):
        pred = predict(x)
        if on_prediction is not None:
            on_prediction(pred, mask)
        if mask is not None:
            cm.update(pred, mask)
    return cm


# ---------------------------------------------------------------------------
# degenerate outputs
# ---------------------------------------------------------------------------

# A class with at least this share of the labelled pixels that is never predicted has collapsed.
COLLAPSED_MIN_SHARE = 0.01
# Structural failures (the whole output is wrong); a collapsed class is one class lost.
STRUCTURAL_FLAGS = ("empty", "single_class", "one_class_per_image")


def output_flags(predicted, truth=None, *, class_names: Sequence[str], images: int | None = None,
                 single_class_images: int | None = None, min_share: float = COLLAPSED_MIN_SHARE) -> list[dict]:
    """Degenerate outputs, whatever the mIoU: no valid class, one class everywhere, one class per
    image, or a class common in the ground truth that is never predicted.

    ``predicted``: pixels predicted per class id (ids from ``len(class_names)`` on are invalid);
    ``truth``: labelled pixels per class, or None (no masks: the collapse check is skipped).
    Each flag is ``{"kind", "message", "classes"}``.
    """
    names = [str(n) for n in class_names]
    c = len(names)
    predicted = np.asarray(predicted, dtype=np.int64)
    valid = predicted[:c]
    if valid.sum() == 0:
        return [{"kind": "empty", "message": "empty mask: no pixel gets a valid class", "classes": []}]
    present = np.flatnonzero(predicted)
    if len(present) == 1:
        name = names[present[0]]
        return [{"kind": "single_class", "message": f"single-class output: every pixel of every image is '{name}'",
                 "classes": [name]}]
    out = []
    if images and single_class_images == images:
        out.append({"kind": "one_class_per_image", "message": "single-class output: each image is one class only",
                    "classes": []})
    if truth is not None:
        truth = np.asarray(truth, dtype=np.int64)[:c]
        share = truth / max(1, int(truth.sum()))
        gone = [k for k in range(c) if share[k] >= min_share and valid[k] == 0]
        if gone:
            listed = ", ".join(f"'{names[k]}' ({share[k]:.1%} of labelled pixels)" for k in gone)
            out.append({"kind": "collapsed", "classes": [names[k] for k in gone],
                        "message": f"collapsed class{'es' if len(gone) > 1 else ''}: {listed} never predicted"})
    return out


# A class the artifact never predicts is the artifact's loss (not the model's) where its source
# predicts it on at least this share of the class's labelled pixels.
SOURCE_FINDS_SHARE = 0.1


def classes_lost(collapsed, source_predicted: dict, truth: dict) -> list[str]:
    """The ``collapsed`` class names (never predicted by an artifact) that its source still finds."""
    return [c for c in collapsed if source_predicted.get(c, 0) >= SOURCE_FINDS_SHARE * truth.get(c, 0)]


def class_map_counts(preds, masks=None, *, num_classes: int, ignore_index: int = 255) -> dict:
    """Pixel counts of a list of class maps (and their masks), the input of :func:`output_flags`."""
    predicted = np.zeros(256, np.int64)
    truth = np.zeros(num_classes, np.int64) if masks is not None else None
    single = 0
    for i, p in enumerate(preds):
        h = np.bincount(np.asarray(p, dtype=np.int64).ravel(), minlength=256)[:256]
        predicted += h
        single += int(np.count_nonzero(h) <= 1)
        if truth is not None:
            m = np.asarray(masks[i]).ravel()
            m = m[(m != ignore_index) & (m < num_classes)]
            truth += np.bincount(m.astype(np.int64), minlength=num_classes)[:num_classes]
    return {"predicted": predicted, "truth": truth, "images": len(preds), "single_class_images": single}


# ---------------------------------------------------------------------------
# boundary F1
# ---------------------------------------------------------------------------

_CROSS = ndimage.generate_binary_structure(2, 1)


def _inner_boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it; the image edge is not a boundary."""
    if not mask.any():
        return mask
    eroded = ndimage.binary_erosion(mask, structure=_CROSS, border_value=1)
    return mask & ~eroded


def _boundary_f1_image(pred: np.ndarray, target: np.ndarray, tolerance: float,
                       num_classes: int | None, ignore_index: int) -> float:
    valid = target != ignore_index
    if num_classes is not None:
        bad = valid & ((target < 0) | (target >= num_classes))
        if bad.any():
            raise DataError(
                f"target has label values {np.unique(target[bad])[:10].tolist()} outside "
                f"0..{num_classes - 1} that are not ignore_index={ignore_index}"
            )
        badp = valid & ((pred < 0) | (pred >= num_classes))
        if badp.any():
            raise DataError(
                f"pred has class ids {np.unique(pred[badp])[:10].tolist()} outside 0..{num_classes - 1}"
            )
    classes = np.unique(target[valid])
    if classes.size == 0:
        return float("nan")
    scores = []
    for c in classes:
        gt_b = _inner_boundary((target == c) & valid)
        pr_b = _inner_boundary((pred == c) & valid)
        n_gt, n_pr = int(gt_b.sum()), int(pr_b.sum())
        if n_gt == 0 and n_pr == 0:
            scores.append(1.0)
            continue
        if n_gt == 0 or n_pr == 0:
            scores.append(0.0)
            continue
        d_to_gt = ndimage.distance_transform_edt(~gt_b)
        d_to_pr = ndimage.distance_transform_edt(~pr_b)
        precision = float(np.mean(d_to_gt[pr_b] <= tolerance))
        recall = float(np.mean(d_to_pr[gt_b] <= tolerance))
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        scores.append(f1)
    return float(np.mean(scores))


def boundary_f1(pred, target, tolerance: float = 2, num_classes: int | None = None,
                ignore_index: int = 255, reduce: str = "mean"):
    """Boundary F1 (BF) score, Csurka et al. 2013, for label maps.

    For each class present in the (non-ignored) ground truth of an image, the
    class boundaries (pixels of the class with a 4-neighbour of another class;
    not the image edge) of prediction and ground truth are matched within
    ``tolerance`` pixels (Euclidean, via a distance transform): precision is the
    share of predicted boundary pixels within tolerance of a true one, recall
    the reverse, and F1 their harmonic mean. A class without a boundary in both
    maps scores 1, in only one of them 0. Ignored pixels are removed from both
    maps before the boundaries are taken. The image score is the mean over the
    classes; NaN if every pixel is ignored.

    ``pred`` / ``target``: ``H x W`` (returns a float) or ``N x H x W``
    (returns the mean over images, skipping NaN images, or with
    ``reduce="none"`` a numpy array of per-image scores). ``num_classes``
    enables a range check of the labels.
    """
    t = _as_labels(target, "target")
    p = _as_labels(pred, "pred")
    if p.shape != t.shape:
        raise DataError(f"pred shape {p.shape} does not match target shape {t.shape}")
    if tolerance < 0:
        raise ConfigError(f"boundary F1 tolerance must be >= 0 pixels, got {tolerance}")
    if reduce not in ("mean", "none"):
        raise ConfigError(f"reduce must be 'mean' or 'none', got {reduce!r}")
    if t.ndim == 2:
        return _boundary_f1_image(p, t, tolerance, num_classes, ignore_index)
    if t.ndim != 3:
        raise DataError(f"boundary_f1 expects H x W or N x H x W label maps, got shape {t.shape}")
    scores = np.array([_boundary_f1_image(pi, ti, tolerance, num_classes, ignore_index)
                       for pi, ti in zip(p, t)], dtype=np.float64)
    if reduce == "none":
        return scores
    return _nanmean(scores)


class BoundaryF1:
    """Average :func:`boundary_f1` over images across batches
    (``update(pred, target)``, ``compute() -> float``, ``reset()``)."""

    def __init__(self, tolerance: float = 2, num_classes: int | None = None, ignore_index: int = 255):
        self.tolerance = tolerance
        self.num_classes = num_classes
        self.ignore_index = int(ignore_index)
        self.reset()

    def reset(self) -> None:
        self.sum = 0.0
        self.count = 0

    def update(self, pred, target) -> "BoundaryF1":
        t = _as_labels(target, "target")
        p = _as_labels(pred, "pred")
        if t.ndim == 2:
            t, p = t[None], p[None]
        scores = boundary_f1(p, t, self.tolerance, self.num_classes, self.ignore_index, reduce="none")
        scores = scores[~np.isnan(scores)]
        self.sum += float(scores.sum())
        self.count += int(scores.size)
        return self

    def compute(self) -> float:
        return self.sum / self.count if self.count else float("nan")


# ---------------------------------------------------------------------------
# binary surface distances
# ---------------------------------------------------------------------------


def _surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels: in the mask with a face-neighbour outside it; the array
    edge counts as outside (as in MedPy)."""
    struct = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=struct, border_value=0)


def _binary_pair(pred_mask, gt_mask):
    a = _to_numpy(pred_mask)
    b = _to_numpy(gt_mask)
    if a.shape != b.shape:
        raise DataError(f"pred mask shape {a.shape} does not match gt mask shape {b.shape}")
    if a.ndim == 0:
        raise DataError("masks must have at least one dimension")
    return a.astype(bool), b.astype(bool)


def surface_distances(pred_mask, gt_mask, spacing=1.0):
    """Distances from each surface pixel of one mask to the other's surface.

    Returns ``(d_pred_to_gt, d_gt_to_pred)`` (1-D float arrays, in the units of
    ``spacing``: a scalar or one value per axis). Masks are binarised with
    ``!= 0``; both must be non-empty (see :func:`hausdorff95` for the empty
    cases).
    """
    a, b = _binary_pair(pred_mask, gt_mask)
    if not a.any() or not b.any():
        raise DataError("surface distances need two non-empty masks")
    sampling = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (a.ndim,)).tolist()
    if any(s <= 0 or not math.isfinite(s) for s in sampling):
        raise ConfigError(f"spacing must be positive, got {spacing}")
    sa, sb = _surface(a), _surface(b)
    d_to_b = ndimage.distance_transform_edt(~sb, sampling=sampling)
    d_to_a = ndimage.distance_transform_edt(~sa, sampling=sampling)
    return d_to_b[sa], d_to_a[sb]


def _empty_case(pred_mask, gt_mask) -> float | None:
    a, b = _binary_pair(pred_mask, gt_mask)
    ea, eb = not a.any(), not b.any()
    if ea and eb:
        return float("nan")
    if ea or eb:
        return float("inf")
    return None


def hausdorff_distance(pred_mask, gt_mask, spacing=1.0, percentile: float = 100.0) -> float:
    """Symmetric Hausdorff distance between the surfaces of two binary masks.

    ``percentile`` 100 is the classic (max) Hausdorff distance; 95 gives HD95:
    the percentile of the pooled distances of both surfaces to each other
    (MedPy's definition). Empty masks: NaN if both are empty, ``inf`` if exactly
    one is.
    """
    if not 0 <= percentile <= 100:
        raise ConfigError(f"percentile must be in [0, 100], got {percentile}")
    special = _empty_case(pred_mask, gt_mask)
    if special is not None:
        return special
    d1, d2 = surface_distances(pred_mask, gt_mask, spacing)
    return float(np.percentile(np.concatenate([d1, d2]), percentile))


def hausdorff95(pred_mask, gt_mask, spacing=1.0) -> float:
    """95th percentile of the symmetric surface distances (HD95) of two binary
    masks (2-D or 3-D, ``!= 0`` is foreground), in the units of ``spacing``.

    Returns NaN when both masks are empty (nothing to compare) and ``inf``
    when exactly one is empty (no surface to measure to).
    """
    return hausdorff_distance(pred_mask, gt_mask, spacing, percentile=95.0)


def assd(pred_mask, gt_mask, spacing=1.0) -> float:
    """Average symmetric surface distance of two binary masks:
    ``(sum d(S_pred, S_gt) + sum d(S_gt, S_pred)) / (|S_pred| + |S_gt|)``
    (Heimann et al. 2009; MedPy instead averages the two directed means).

    Same empty-mask rule as :func:`hausdorff95`: NaN if both are empty,
    ``inf`` if exactly one is.
    """
    special = _empty_case(pred_mask, gt_mask)
    if special is not None:
        return special
    d1, d2 = surface_distances(pred_mask, gt_mask, spacing)
    return float((d1.sum() + d2.sum()) / (d1.size + d2.size))
