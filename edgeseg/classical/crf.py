"""Fully connected CRF refinement of per-pixel class probabilities.

Krähenbühl & Koltun, "Efficient Inference in Fully Connected CRFs with Gaussian Edge
Potentials", NIPS 2011 (arXiv:1210.5644). Post-processing for any model's softmax
output: pixels that are close and similar in colour are pushed towards the same label,
which snaps coarse (stride-8/16/32) predictions to image edges.

Model
-----
Energy ``E(x) = sum_i U_i(x_i) + sum_{i<j} mu(x_i, x_j) k(f_i, f_j)`` with the unary
``U_i(l) = -log max(P_i(l), min_prob)`` and the kernel

    k(f_i, f_j) = compat_bilateral * exp(-|p_i - p_j|^2 / 2 sxy_bilateral^2
                                         -|I_i - I_j|^2 / 2 srgb^2)          (appearance)
                + compat_gaussian  * exp(-|p_i - p_j|^2 / 2 sxy_gaussian^2)  (smoothness)

``p`` = pixel position (pixels), ``I`` = RGB colour (0..255). ``sxy_*`` and ``srgb`` are
the kernels' standard deviations; ``compat_*`` their weights. ``mu`` is the label
compatibility: ``"potts"`` (``mu(l, l') = [l != l']``) or a ``C x C`` matrix of costs
(``mu[l, l']`` = penalty for label ``l`` at a pixel similar to pixels of label ``l'``;
Potts is ``1 - eye(C)``, a learned matrix may make e.g. rider-next-to-bicycle cheap).
One ``mu`` is shared by both kernels, as in the paper.

Inference
---------
Mean field, ``Q = softmax(-U)`` then ``iterations`` times::

    m_k(l)  = sum_j k_k(i, j) Q_j(l) / sum_j k_k(i, j)      (message passing, k = both kernels)
    Q       = softmax(-U - sum_k compat_k * mu(m_k))        (compatibility transform, update)

Messages are normalised (a weighted mean of ``Q``, as pydensecrf's default
normalisation does), so the pairwise terms are bounded by ``compat_*`` and the
parameters mean the same at any resolution. The self term ``j = i`` is kept (its
weight is under 2% for ``sxy_gaussian=3`` and negligible for the bilateral kernel).

* Spatial kernel: exact separable Gaussian blur (``cv2.GaussianBlur``, reflected border).
* Bilateral kernel: the **permutohedral lattice** of Adams, Baek & Davis (Eurographics
  2010), the approximation the paper uses: each pixel's 5-D feature
  ``(x/sxy, y/sxy, r/srgb, g/srgb, b/srgb)`` is splatted with barycentric weights onto
  the ``d+1 = 6`` vertices of its enclosing simplex, the lattice is blurred with a
  ``[1 2 1]`` kernel along each of its 6 axes, and values are sliced back with the same
  weights. The lattice is built once per image (numpy ``unique`` / ``searchsorted``
  hashing); splat and slice are sparse matrix products (``scipy.sparse``), so one
  iteration costs ``O(N C)``. Compared with exact filtering it slightly widens the
  Gaussian and makes it piecewise linear; it is the same approximation as the
  reference C++ code, so results are close to pydensecrf's (not bit-identical).

``downsample=f`` runs the CRF on an ``f``-times smaller image (``sxy_*`` scaled by
``1/f``) and upsamples the refined probabilities bilinearly: about ``f^2`` times
faster, with boundaries only as precise as the coarse grid.

``backend="pydensecrf"`` uses the C++ implementation from the optional ``pydensecrf2``
package instead (imported lazily; :class:`~edgeseg.errors.MissingDependencyError`
when absent). Its messages use symmetric normalisation, so numbers differ slightly.
"""

from __future__ import annotations

from numbers import Integral, Real

import cv2
import numpy as np
from scipy import sparse

from edgeseg.data.transforms import resize_hwc
from edgeseg.errors import ConfigError, DataError, MissingDependencyError

__all__ = ["dense_crf", "crf_refine_logits", "BACKENDS", "DEFAULTS"]

BACKENDS = ("numpy", "pydensecrf")

# Smoothness kernel 3 px / weight 3 as in the paper and pydensecrf's examples. The
# appearance kernel is milder than pydensecrf README's 80 px / 13 levels / weight 10,
# which over-smoothed CamVid's thin classes (poles, signs) in tools/bench_crf_kmeans.py's
# simulated check; tune it for a given model with that tool's --checkpoint.
DEFAULTS = dict(iterations=5, sxy_gaussian=3.0, compat_gaussian=3.0, sxy_bilateral=60.0,
                srgb=10.0, compat_bilateral=5.0)


# --------------------------------------------------------------------------- checks

def _positive(value, name: str, allow_zero: bool = False) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, Real) and np.isfinite(value)
          and (value >= 0 if allow_zero else value > 0))
    if not ok:
        raise ConfigError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


def _check_inputs(probs, image_rgb) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(image_rgb, np.ndarray) or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise DataError(f"CRF expects an RGB image of shape HxWx3, got {getattr(image_rgb, 'shape', type(image_rgb))}")
    if image_rgb.dtype != np.uint8:
        raise DataError(f"CRF expects a uint8 RGB image (0..255), got {image_rgb.dtype}: convert it first")
    p = np.asarray(probs)
    if p.ndim != 3:
        raise DataError(f"CRF expects probabilities of shape CxHxW, got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.floating):
        raise DataError(f"CRF expects float probabilities (softmax output), got dtype {p.dtype}")
    if p.shape[1:] != image_rgb.shape[:2]:
        raise DataError(
            f"probabilities are {p.shape[1]}x{p.shape[2]} but the image is "
            f"{image_rgb.shape[0]}x{image_rgb.shape[1]} (HxW): crop or resize them to the image"
        )
    if p.shape[0] < 1 or p.shape[1] == 0 or p.shape[2] == 0:
        raise DataError(f"CRF got empty probabilities of shape {p.shape}")
    p = p.astype(np.float32, copy=False)
    if not np.all(np.isfinite(p)) or p.min() < 0:
        raise DataError("probabilities must be finite and >= 0: pass softmax(logits), not logits")
    return p, image_rgb


def _check_compat(compatibility, c: int) -> np.ndarray | None:
    if isinstance(compatibility, str):
        if compatibility != "potts":
            raise ConfigError(f"compatibility must be 'potts' or a {c}x{c} matrix, got {compatibility!r}")
        return None
    try:
        mu = np.asarray(compatibility, dtype=np.float32)
    except (TypeError, ValueError):
        raise ConfigError(f"compatibility must be 'potts' or a {c}x{c} matrix of numbers") from None
    if mu.shape != (c, c) or not np.all(np.isfinite(mu)):
        raise ConfigError(
            f"compatibility matrix must be {c}x{c} finite numbers (one row and column per class), "
            f"got shape {mu.shape}"
        )
    return mu


# --------------------------------------------------------------------------- permutohedral lattice

class _Lattice:
    """Permutohedral lattice for fixed ``features`` (N x d, already divided by the
    kernel's standard deviations). ``filter(v)`` ~ ``sum_j exp(-|f_i - f_j|^2 / 2) v_j``
    up to a constant factor (normalise with ``filter(ones)``).

    Lattice points are hashed as mixed-radix int64 codes of their first d coordinates,
    so a neighbour's code is the point's code plus a constant per axis. Pixels sharing a
    simplex are grouped first, so only distinct simplices' vertices are hashed.
    """

    def __init__(self, features: np.ndarray):
        f = np.asarray(features, dtype=np.float64)
        n, d = f.shape
        d1 = d + 1
        # elevate onto the hyperplane x . 1 = 0 of R^{d+1} (Adams et al. 2010, p.5)
        inv_std = np.sqrt(2.0 / 3.0) * d1
        scale = inv_std / np.sqrt((np.arange(d) + 1.0) * (np.arange(d) + 2.0))
        cf = [f[:, i] * scale[i] for i in range(d)]
        elevated = [None] * d1
        acc = np.zeros(n)
        for j in range(d, 0, -1):
            elevated[j] = acc - j * cf[j - 1]
            acc = acc + cf[j - 1]
        elevated[0] = acc
        # closest remainder-0 point, then the simplex containing the point (by ranking)
        rd = [np.rint(e / d1) for e in elevated]
        rem0 = [(r * d1).astype(np.int64) for r in rd]
        total = np.rint(sum(rd)).astype(np.int64)
        diff = [e - r for e, r in zip(elevated, rem0)]
        rank = [total.copy() for _ in range(d1)]
        for i in range(d1):
            for j in range(i + 1, d1):
                less = diff[i] < diff[j]
                rank[i] += less
                rank[j] += ~less
        for i in range(d1):
            low = rank[i] < 0
            high = rank[i] > d
            rank[i][low] += d1
            rem0[i][low] += d1
            rank[i][high] -= d1
            rem0[i][high] -= d1
        # barycentric coordinates (p.10)
        rows = np.arange(n)
        bary = np.zeros((n, d1 + 1))
        for i in range(d1):
            v = (elevated[i] - rem0[i]) / d1
            bary[rows, d - rank[i]] += v
            bary[rows, d - rank[i] + 1] -= v
        bary[:, 0] += 1.0 + bary[:, d1]
        bary = bary[:, :d1]
        # mixed-radix codes; the margins keep every vertex and neighbour inside its digit
        lo = np.array([r.min() for r in rem0[:d]]) - 2 * d1
        span = np.array([r.max() for r in rem0[:d]]) + 2 * d1 + 1 - lo
        if np.prod(span.astype(np.float64)) * d1 ** d >= 2.0 ** 62:
            raise ConfigError(
                "the CRF's bilateral lattice is too fine for this image: raise srgb or sxy_bilateral, "
                "or use downsample"
            )
        radix = np.cumprod(np.concatenate([[1], span[:-1]])).astype(np.int64)
        base = sum((rem0[i] - lo[i]) * radix[i] for i in range(d))
        rank_code = sum(rank[i] * d1 ** i for i in range(d))
        # group pixels by simplex
        simplex_inv, rep = _group(base * d1 ** d + rank_code)
        # the d+1 vertices of each distinct simplex: rem0 + canonical(remainder, rank)
        rbase, rrank = base[rep], [rank[i][rep] for i in range(d)]
        rsum = int(radix.sum())
        vcodes = np.empty((rep.size, d1), dtype=np.int64)
        for r in range(d1):
            wrap = sum(radix[i] * (rrank[i] > d - r) for i in range(d))
            vcodes[:, r] = rbase + r * rsum - d1 * wrap
        vinv, vrep = _group(vcodes.reshape(-1))
        uniq = vcodes.reshape(-1)[vrep]  # sorted
        m = uniq.size
        self.size = m
        vertex = vinv.reshape(-1, d1)[simplex_inv]  # N x (d+1) lattice point ids
        # slice: N x M with d+1 barycentric weights per row; splat is its transpose
        self.slice = sparse.csr_matrix(
            (bary.astype(np.float32).reshape(-1), vertex.reshape(-1), np.arange(0, n * d1 + 1, d1)),
            shape=(n, m))
        self.splat = self.slice.T.tocsr()
        # neighbours along each of the d+1 lattice axes: key -1 everywhere, +d on axis j
        self.neighbours = []
        for j in range(d1):
            step = -rsum + (d1 * int(radix[j]) if j < d else 0)
            pair = []
            for c in (uniq + step, uniq - step):
                idx = np.searchsorted(uniq, c)
                idx[idx >= m] = m - 1
                pair.append(np.where(uniq[idx] == c, idx, m))  # m = the zero row
            self.neighbours.append(tuple(pair))

    def filter(self, values: np.ndarray) -> np.ndarray:
        """``values`` N x C float32 -> blurred N x C (unnormalised)."""
        v = self.splat @ values
        buf = np.zeros((self.size + 1, v.shape[1]), dtype=v.dtype)
        for n1, n2 in self.neighbours:
            buf[:-1] = v
            v = v + 0.5 * (buf[n1] + buf[n2])
        return self.slice @ v


def _group(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(inverse, first)``: group id of each code (groups numbered in sorted code order)
    and one index per group."""
    perm = np.argsort(codes)
    s = codes[perm]
    flag = np.empty(s.size, dtype=bool)
    flag[:1] = True
    np.not_equal(s[1:], s[:-1], out=flag[1:])
    inverse = np.empty(s.size, dtype=np.int64)
    inverse[perm] = np.cumsum(flag) - 1
    return inverse, perm[flag]


# --------------------------------------------------------------------------- inference

def _softmax_hwc(logits: np.ndarray, shift: bool = True) -> np.ndarray:
    """In-place softmax over the last axis. ``shift=False`` skips subtracting the max
    (callers use it when |logits| is known to be small enough for float32 exp)."""
    c = logits.shape[-1]
    flat = logits.reshape(-1, c)
    if shift:
        flat -= flat.max(axis=1, keepdims=True)
    np.exp(flat, out=flat)
    flat /= (flat @ np.ones(c, dtype=flat.dtype))[:, None]
    return logits


def _mean_field_numpy(unary_hwc, image_rgb, iterations, sxy_g, w_g, sxy_b, srgb, w_b, mu):
    h, w, c = unary_hwc.shape
    q = _softmax_hwc(-unary_hwc)
    if iterations == 0:
        return q
    # |logit| <= max unary + max pairwise: skip the max-shift of the softmax when exp is safe
    pair_max = (w_g + w_b) * (1.0 if mu is None else float(np.abs(mu).sum(axis=1).max()))
    shift = float(unary_hwc.max()) + pair_max > 60.0
    lattice = None
    if w_b > 0:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        feats = np.concatenate([xx.reshape(-1, 1) / sxy_b, yy.reshape(-1, 1) / sxy_b,
                                image_rgb.reshape(-1, 3).astype(np.float32) / srgb], axis=1)
        lattice = _Lattice(feats)
        norm_b = lattice.filter(np.ones((h * w, 1), np.float32))
        inv_norm_b = (1.0 / np.maximum(norm_b, 1e-20)).astype(np.float32)
    for _ in range(iterations):
        pairwise = np.zeros((h, w, c), np.float32)
        if w_g > 0:
            pairwise += w_g * cv2.GaussianBlur(q, (0, 0), sigmaX=sxy_g, sigmaY=sxy_g,
                                               borderType=cv2.BORDER_REFLECT).reshape(h, w, c)
        if lattice is not None:
            msg = lattice.filter(q.reshape(-1, c)) * inv_norm_b
            pairwise += w_b * msg.reshape(h, w, c).astype(np.float32, copy=False)
        if mu is None:  # Potts: -[l != l'] m(l') = m(l) - sum(m), the sum cancels in softmax
            logits = pairwise - unary_hwc
        else:
            logits = -unary_hwc - (pairwise.reshape(-1, c) @ mu.T).reshape(h, w, c)
        q = _softmax_hwc(logits, shift=shift)
    return q


def _mean_field_pydensecrf(unary_hwc, image_rgb, iterations, sxy_g, w_g, sxy_b, srgb, w_b, mu):
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as exc:
        raise MissingDependencyError("pydensecrf", "crf", "the pydensecrf CRF backend") from exc
    h, w, c = unary_hwc.shape
    if iterations == 0:
        return _softmax_hwc(-unary_hwc)
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_hwc.reshape(-1, c).T, dtype=np.float32))

    def compat(weight):
        # pydensecrf's Potts(w) adds w*m(l) to the logit; a matrix M subtracts M @ m
        return float(weight) if mu is None else np.ascontiguousarray(weight * mu, dtype=np.float32)

    if w_g > 0:
        crf.addPairwiseGaussian(sxy=sxy_g, compat=compat(w_g))
    if w_b > 0:
        crf.addPairwiseBilateral(sxy=sxy_b, srgb=srgb, rgbim=np.ascontiguousarray(image_rgb), compat=compat(w_b))
    q = np.asarray(crf.inference(int(iterations)), dtype=np.float32)
    return q.T.reshape(h, w, c)


def dense_crf(probs: np.ndarray, image_rgb: np.ndarray, *, iterations: int = 5,
              sxy_gaussian: float = 3.0, compat_gaussian: float = 3.0,
              sxy_bilateral: float = 60.0, srgb: float = 10.0, compat_bilateral: float = 5.0,
              compatibility="potts", downsample: int = 1, min_prob: float = 1e-5,
              backend: str = "numpy") -> np.ndarray:
    """Refine ``probs`` (``C x H x W`` float softmax output) with a fully connected CRF
    on ``image_rgb`` (``H x W x 3`` uint8 RGB). Returns refined probabilities
    ``C x H x W`` float32 (each pixel sums to 1).

    ``iterations``: mean-field steps (0 returns ``softmax(-U)``, i.e. the input
    renormalised, with values below ``min_prob`` raised to it).
    ``sxy_gaussian`` (px) / ``compat_gaussian``: smoothness kernel std and weight.
    ``sxy_bilateral`` (px) / ``srgb`` (colour levels 0..255) / ``compat_bilateral``:
    appearance kernel stds and weight. A weight of 0 switches that kernel off.
    ``compatibility``: ``"potts"`` or a ``C x C`` cost matrix (see module docs).
    ``downsample``: integer factor to run at lower resolution (see module docs).
    ``min_prob``: the unary is ``-log(max(p, min_prob))``, capping how sure a pixel can
    be so the pairwise terms can still correct confident mistakes (pydensecrf's
    ``unary_from_softmax`` uses the same 1e-5).
    ``backend``: ``"numpy"`` (always available) or ``"pydensecrf"`` (optional C++ package).
    """
    p, image_rgb = _check_inputs(probs, image_rgb)
    if isinstance(iterations, bool) or not isinstance(iterations, Integral) or iterations < 0:
        raise ConfigError(f"iterations must be an integer >= 0, got {iterations!r}")
    if isinstance(downsample, bool) or not isinstance(downsample, Integral) or downsample < 1:
        raise ConfigError(f"downsample must be an integer >= 1, got {downsample!r}")
    sxy_g = _positive(sxy_gaussian, "sxy_gaussian")
    w_g = _positive(compat_gaussian, "compat_gaussian", allow_zero=True)
    sxy_b = _positive(sxy_bilateral, "sxy_bilateral")
    s_rgb = _positive(srgb, "srgb")
    w_b = _positive(compat_bilateral, "compat_bilateral", allow_zero=True)
    min_prob = _positive(min_prob, "min_prob")
    if min_prob >= 1:
        raise ConfigError(f"min_prob must be below 1, got {min_prob}")
    if backend not in BACKENDS:
        raise ConfigError(f"CRF backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    c, h, w = p.shape
    mu = _check_compat(compatibility, c)

    hwc = np.ascontiguousarray(p.transpose(1, 2, 0))
    img = image_rgb
    f = int(downsample)
    if f > 1:
        sh, sw = max(1, round(h / f)), max(1, round(w / f))
        hwc = resize_hwc(hwc, sh, sw, cv2.INTER_AREA)
        img = cv2.resize(image_rgb, (sw, sh), interpolation=cv2.INTER_AREA)
        sxy_g, sxy_b = sxy_g / f, sxy_b / f
    unary = -np.log(np.maximum(hwc, np.float32(min_prob)))
    if backend == "numpy":
        q = _mean_field_numpy(unary, img, int(iterations), sxy_g, w_g, sxy_b, s_rgb, w_b, mu)
    else:
        q = _mean_field_pydensecrf(unary, img, int(iterations), sxy_g, w_g, sxy_b, s_rgb, w_b, mu)
    if f > 1:
        q = resize_hwc(np.ascontiguousarray(q), h, w, cv2.INTER_LINEAR)
        q = np.maximum(q, 0)
        q /= q.sum(axis=-1, keepdims=True)
    return np.ascontiguousarray(q.transpose(2, 0, 1), dtype=np.float32)


def crf_refine_logits(logits, images, **crf_kwargs) -> np.ndarray:
    """Class maps (``N x H x W`` int64) from model ``logits`` (``N x C x H x W`` torch
    tensor or array, already cropped to the images) refined by :func:`dense_crf` with
    ``images`` (``N x H x W x 3`` uint8 RGB array, or a sequence of ``H x W x 3``
    arrays). ``crf_kwargs`` go to :func:`dense_crf`."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    if torch is not None and isinstance(logits, torch.Tensor):
        probs = torch.softmax(logits.detach().float().cpu(), dim=1).numpy()
    else:
        x = np.asarray(logits, dtype=np.float32)
        if x.ndim != 4:
            raise DataError(f"logits must be NxCxHxW, got shape {x.shape}")
        x = x - x.max(axis=1, keepdims=True)
        probs = np.exp(x)
        probs /= probs.sum(axis=1, keepdims=True)
    if probs.ndim != 4:
        raise DataError(f"logits must be NxCxHxW, got shape {tuple(probs.shape)}")
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[None]
    if len(images) != probs.shape[0]:
        raise DataError(f"{probs.shape[0]} logit maps but {len(images)} images: give one image per map")
    out = np.empty((probs.shape[0],) + probs.shape[2:], dtype=np.int64)
    for i, image in enumerate(images):
        out[i] = dense_crf(probs[i], np.asarray(image), **crf_kwargs).argmax(axis=0)
    return out
