"""K-means colour (optionally colour + position) clustering: the textbook unsupervised
segmentation baseline.

:func:`kmeans_segment` clusters the pixels of one image with OpenCV's ``cv2.kmeans``
(k-means++ seeding, best of ``attempts`` runs) on per-pixel features

* colour: CIE L*a*b* (default; ``L/100, a/100, b/100``) or RGB (``/255``), so one
  unit is roughly the whole colour range;
* position (``use_position=True``): ``position_weight * (y, x) / max(H, W)``, so with
  ``position_weight=1`` crossing the whole image counts as much as crossing the whole
  colour range. Larger weights give compact, superpixel-like regions.

Large images are fitted on a random subsample of ``max_fit_pixels`` pixels and every
pixel is then assigned to its nearest centre.

Clusters carry no class. To compare with learned models, :func:`map_clusters_to_classes`
gives each cluster the majority ground-truth class of its pixels and
:func:`evaluate_kmeans` scores a dataset that way. **The mapping uses each image's own
ground truth**, so the score is an oracle upper bound for the clustering (the standard
way to score unsupervised segmentation), not what the method achieves without labels.
"""

from __future__ import annotations

import time
from numbers import Integral, Real

import cv2
import numpy as np

from edgeseg.errors import ConfigError, DataError
from edgeseg.metrics import ConfusionMatrix

__all__ = ["kmeans_segment", "map_clusters_to_classes", "evaluate_kmeans", "COLOR_SPACES"]

COLOR_SPACES = ("lab", "rgb")


def _check_image(image_rgb) -> np.ndarray:
    if not isinstance(image_rgb, np.ndarray) or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise DataError(
            f"k-means expects an RGB image of shape HxWx3, got {getattr(image_rgb, 'shape', type(image_rgb))}"
        )
    if image_rgb.dtype != np.uint8:
        raise DataError(f"k-means expects a uint8 RGB image (0..255), got {image_rgb.dtype}: convert it first")
    if image_rgb.shape[0] == 0 or image_rgb.shape[1] == 0:
        raise DataError(f"k-means got an empty image of shape {image_rgb.shape}")
    return image_rgb


def _int_option(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def pixel_features(image_rgb: np.ndarray, *, use_position: bool = False, position_weight: float = 0.5,
                   color_space: str = "lab") -> np.ndarray:
    """``(H*W, 3)`` or ``(H*W, 5)`` float32 features used by :func:`kmeans_segment`."""
    image_rgb = _check_image(image_rgb)
    if color_space not in COLOR_SPACES:
        raise ConfigError(f"color_space must be one of {', '.join(COLOR_SPACES)}, got {color_space!r}")
    if isinstance(position_weight, bool) or not isinstance(position_weight, Real) \
            or not np.isfinite(position_weight) or position_weight < 0:
        raise ConfigError(f"position_weight must be a finite number >= 0, got {position_weight!r}")
    h, w = image_rgb.shape[:2]
    rgb = image_rgb.astype(np.float32) * np.float32(1.0 / 255.0)
    if color_space == "lab":
        # float input: L in 0..100, a and b in about -127..127
        color = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab) * np.float32(0.01)
    else:
        color = rgb
    color = color.reshape(-1, 3)
    if not use_position:
        return np.ascontiguousarray(color)
    scale = np.float32(position_weight / max(h, w))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pos = np.stack([yy.ravel(), xx.ravel()], axis=1) * scale
    return np.ascontiguousarray(np.concatenate([color, pos], axis=1))


def _nearest_centre(features: np.ndarray, centres: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(features.shape[0], dtype=np.int32)
    c2 = np.einsum("kd,kd->k", centres, centres)
    for s in range(0, features.shape[0], chunk):
        f = features[s:s + chunk]
        # ||f - c||^2 = ||f||^2 - 2 f.c + ||c||^2; ||f||^2 does not change the argmin
        out[s:s + chunk] = np.argmin(c2[None, :] - 2.0 * (f @ centres.T), axis=1)
    return out


def kmeans_segment(image_rgb: np.ndarray, k: int, *, use_position: bool = False,
                   position_weight: float = 0.5, color_space: str = "lab", attempts: int = 3,
                   seed: int = 0, max_iter: int = 20, eps: float = 1e-3,
                   max_fit_pixels: int | None = 50_000) -> np.ndarray:
    """Cluster the pixels of ``image_rgb`` (uint8 HxWx3 RGB) into ``k`` groups.

    Returns an ``H x W`` int32 map of cluster ids ``0..k-1``, numbered by decreasing
    cluster size (id 0 is the largest cluster), so results do not depend on OpenCV's
    internal order. A cluster can be empty when the image has fewer than ``k``
    distinct feature values.

    ``use_position`` / ``position_weight`` / ``color_space``: see the module docs.
    ``attempts``: k-means++ restarts, the lowest-compactness one wins.
    ``max_iter`` / ``eps``: Lloyd stopping criteria per attempt.
    ``max_fit_pixels``: fit on at most this many randomly chosen pixels (``None``: all),
    then assign every pixel to the nearest centre. ``seed`` fixes the subsample and
    OpenCV's RNG, so equal inputs give equal outputs.

    Raises :class:`ConfigError` for ``k < 2`` or ``k`` above the number of pixels
    (or fitted pixels), and for bad options; :class:`DataError` for a bad image.
    """
    image_rgb = _check_image(image_rgb)
    k = _int_option(k, "k (number of clusters)", 2)
    attempts = _int_option(attempts, "attempts", 1)
    max_iter = _int_option(max_iter, "max_iter", 1)
    seed = _int_option(seed, "seed", 0)
    if max_fit_pixels is not None:
        max_fit_pixels = _int_option(max_fit_pixels, "max_fit_pixels", 2)
    if isinstance(eps, bool) or not isinstance(eps, Real) or not eps >= 0:
        raise ConfigError(f"eps must be a number >= 0, got {eps!r}")
    h, w = image_rgb.shape[:2]
    n = h * w
    if k > n:
        raise ConfigError(f"k={k} clusters but the image has only {n} pixels: use a k between 2 and {n}")
    feats = pixel_features(image_rgb, use_position=use_position, position_weight=position_weight,
                           color_space=color_space)
    subsample = max_fit_pixels is not None and n > max_fit_pixels
    if subsample:
        if k > max_fit_pixels:
            raise ConfigError(
                f"k={k} clusters but only max_fit_pixels={max_fit_pixels} pixels are fitted: "
                f"raise max_fit_pixels or lower k"
            )
        idx = np.random.default_rng(seed).choice(n, size=max_fit_pixels, replace=False)
        fit = np.ascontiguousarray(feats[idx])
    else:
        fit = feats
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, max_iter, float(eps))
    cv2.setRNGSeed(seed)
    _, fit_labels, centres = cv2.kmeans(fit, k, None, criteria, attempts, cv2.KMEANS_PP_CENTERS)
    centres = centres.astype(np.float32)
    labels = _nearest_centre(feats, centres) if subsample else fit_labels.reshape(-1).astype(np.int32)
    # canonical numbering: by decreasing size, ties by centre order
    sizes = np.bincount(labels, minlength=k)
    order = np.argsort(-sizes, kind="stable")
    remap = np.empty(k, dtype=np.int32)
    remap[order] = np.arange(k, dtype=np.int32)
    return remap[labels].reshape(h, w)


def map_clusters_to_classes(clusters: np.ndarray, gt_mask: np.ndarray, num_classes: int,
                            ignore_index: int = 255) -> np.ndarray:
    """Give every cluster the most frequent ground-truth class among its non-ignored
    pixels (ties: the lowest class id); a cluster whose pixels are all ``ignore_index``
    becomes ``ignore_index``. Returns an int32 class map of the clusters' shape.

    This is the majority-vote (oracle) mapping used to score unsupervised segmentation:
    it reads ``gt_mask`` of the same image, so scores computed from its output are an
    upper bound for the clustering, not a prediction made without labels.
    """
    num_classes = _int_option(num_classes, "num_classes", 1)
    c = np.asarray(clusters)
    g = np.asarray(gt_mask)
    if c.shape != g.shape:
        raise DataError(f"cluster map shape {c.shape} does not match ground-truth shape {g.shape}")
    if not np.issubdtype(c.dtype, np.integer):
        raise DataError(f"cluster map must hold integer cluster ids, got dtype {c.dtype}")
    if not np.issubdtype(g.dtype, np.integer):
        raise DataError(f"ground-truth mask must hold integer class ids, got dtype {g.dtype}")
    c = c.astype(np.int64, copy=False)
    g = g.astype(np.int64, copy=False)
    if c.size and c.min() < 0:
        raise DataError(f"cluster ids must be >= 0, got {int(c.min())}")
    valid = g != ignore_index
    bad = valid & ((g < 0) | (g >= num_classes))
    if bad.any():
        raise DataError(
            f"ground truth has labels {np.unique(g[bad])[:10].tolist()} outside 0..{num_classes - 1} "
            f"that are not ignore_index={ignore_index}: check num_classes and the label mapping"
        )
    n_clusters = int(c.max()) + 1 if c.size else 0
    counts = np.bincount(c[valid] * num_classes + g[valid],
                         minlength=n_clusters * num_classes).reshape(n_clusters, num_classes)
    lut = np.argmax(counts, axis=1).astype(np.int32)
    lut[counts.sum(axis=1) == 0] = ignore_index
    return lut[c] if n_clusters else np.full(c.shape, ignore_index, dtype=np.int32)


def evaluate_kmeans(dataset, k: int, *, use_position: bool = False, position_weight: float = 0.5,
                    color_space: str = "lab", attempts: int = 3, seed: int = 0, max_iter: int = 20,
                    max_fit_pixels: int | None = 50_000, limit: int | None = None,
                    progress=None) -> dict:
    """Score k-means clustering on ``dataset`` (a :class:`~edgeseg.data.SegmentationDataset`,
    or anything with ``read(i) -> (rgb, mask)``, ``len()`` and ``info``) with the
    majority-vote mapping of :func:`map_clusters_to_classes`.

    **Oracle evaluation**: each image's clusters are named with that image's own ground
    truth, so ``miou`` is an upper bound for the clustering (the standard protocol for
    unsupervised segmentation), not comparable to a model's score as an achievable result.

    Returns :meth:`ConfusionMatrix.summary` (``miou``, ``pixel_accuracy``,
    ``per_class_iou`` {class: IoU or None}, ...) plus ``ms_per_image`` (mean time of
    :func:`kmeans_segment` alone, reading and scoring excluded), ``images``, ``k`` and the
    clustering settings. ``limit`` scores only the first ``limit`` images;
    ``progress(i, n)`` is called after each image.
    """
    for attr in ("read", "info"):
        if not hasattr(dataset, attr):
            raise ConfigError(f"evaluate_kmeans needs a dataset from edgeseg.data.open_dataset, got {type(dataset).__name__}")
    n = len(dataset)
    if limit is not None:
        n = min(n, _int_option(limit, "limit", 1))
    if n == 0:
        raise DataError(f"dataset {dataset!r} has no images to evaluate")
    info = dataset.info
    cm = ConfusionMatrix(info.num_classes, info.ignore_index)
    seconds = 0.0
    for i in range(n):
        image, mask = dataset.read(i)
        t0 = time.perf_counter()
        clusters = kmeans_segment(image, k, use_position=use_position, position_weight=position_weight,
                                  color_space=color_space, attempts=attempts, seed=seed,
                                  max_iter=max_iter, max_fit_pixels=max_fit_pixels)
        seconds += time.perf_counter() - t0
        cm.update(map_clusters_to_classes(clusters, mask, info.num_classes, info.ignore_index), mask)
        if progress is not None:
            progress(i + 1, n)
    out = cm.summary(info.classes)
    out.update({
        "ms_per_image": 1000.0 * seconds / n,
        "images": n,
        "k": int(k),
        "use_position": bool(use_position),
        "position_weight": float(position_weight) if use_position else None,
        "color_space": color_space,
        "evaluation": "majority-vote cluster->class mapping with each image's ground truth (oracle upper bound)",
    })
    return out
