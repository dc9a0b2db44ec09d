"""Joint image + mask transforms, built on albumentations.

Every transform here is a callable ``(image, mask) -> (image, mask)`` on numpy arrays:
``image`` uint8 H x W x 3 RGB, ``mask`` uint8 H x W of class ids or the ignore index.
Geometric operations move image and mask together; the mask is always resampled with
nearest-neighbour interpolation so no new (interpolated) label values can appear, and
every pixel that comes from outside the original image (padding, rotated corners,
elastic borders) is labelled ``ignore_index`` so losses and metrics skip it.

Padding colour: images are padded *before* normalisation. By default the image is
padded with the ImageNet mean colour :data:`MEAN_RGB_U8` (124, 116, 104), which the
normalisation turns into ~0, the same value zero padding inside the network uses; pass
``image_fill=0`` to pad with black instead. Use the same choice for training and
evaluation. :func:`pad_to_multiple` (for single-image inference) pads with ``value``.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # never let albumentations go online

from typing import Sequence

import cv2
import numpy as np

from edgeseg.data.info import IMAGENET_MEAN, IMAGENET_STD
from edgeseg.errors import ConfigError, DataError

MEAN_RGB_U8 = tuple(int(round(m * 255)) for m in IMAGENET_MEAN)  # (124, 116, 104)


def resize_hwc(a: np.ndarray, h: int, w: int, interp) -> np.ndarray:
    """cv2.resize for H x W x C arrays of any C (cv2 caps channels at 512)."""
    if a.shape[0] == h and a.shape[1] == w:
        return a
    if a.ndim == 2 or a.shape[2] <= 512:
        r = cv2.resize(a, (w, h), interpolation=interp)
        return r if r.ndim == a.ndim else r[..., None]
    return np.concatenate([resize_hwc(a[..., i:i + 512], h, w, interp) for i in range(0, a.shape[2], 512)], 2)

__all__ = [
    "MEAN_RGB_U8",
    "JointTransform",
    "EvalTransform",
    "build_train_transform",
    "build_eval_transform",
    "pad_to_multiple",
    "normalize",
]


def _albumentations():
    import albumentations as A

    return A


def _fill_kwargs(A, fill, fill_mask) -> dict:
    # albumentations 2.x names them fill/fill_mask, 1.4 value/mask_value.
    major = int(str(A.__version__).split(".")[0])
    if major >= 2:
        return {"fill": fill, "fill_mask": fill_mask}
    return {"value": fill, "mask_value": fill_mask}


def _check_size(size, what="size") -> tuple[int, int]:
    try:
        h, w = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError) as exc:
        raise ConfigError(f"{what} must be (height, width) in pixels, got {size!r}") from exc
    if h <= 0 or w <= 0:
        raise ConfigError(f"{what} must be positive (height, width), got {size!r}")
    return h, w


def _check_pair(image: np.ndarray, mask: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(
            f"transform expects an RGB uint8 image of shape HxWx3, got "
            f"{getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')}"
        )
    if mask is not None and (mask.ndim != 2 or mask.shape != image.shape[:2]):
        raise DataError(
            f"transform expects a HxW mask of the image's size {image.shape[:2]}, got {mask.shape}"
        )


class JointTransform:
    """Wrap an ``albumentations.Compose`` as ``(image, mask) -> (image, mask)``.

    Re-seeds itself once in every new process (DataLoader workers are forked with the
    same random state, which would otherwise give every worker the same augmentations),
    from ``torch.initial_seed()`` so that ``torch.manual_seed`` makes runs reproducible.
    """

    def __init__(self, compose):
        self.compose = compose
        self._pid = None

    def _maybe_reseed(self):
        pid = os.getpid()
        if self._pid != pid:
            self._pid = pid
            try:
                import torch

                seed = int(torch.initial_seed()) % (2**32)
            except Exception:  # pragma: no cover - torch is a dependency
                seed = None
            if seed is not None and hasattr(self.compose, "set_random_seed"):
                self.compose.set_random_seed(seed)

    def __call__(self, image: np.ndarray, mask: np.ndarray):
        _check_pair(image, mask)
        self._maybe_reseed()
        out = self.compose(image=image, mask=mask)
        return np.ascontiguousarray(out["image"]), np.ascontiguousarray(out["mask"])

    def __repr__(self):
        return f"JointTransform({self.compose!r})"


def build_train_transform(
    size: Sequence[int] | int = (512, 512),
    *,
    scale: tuple[float, float] = (0.5, 2.0),
    hflip: bool = True,
    rotate: float = 0.0,
    elastic: bool = False,
    color_jitter: bool = True,
    ignore_index: int = 255,
    image_fill: int | Sequence[int] = MEAN_RGB_U8,
) -> JointTransform:
    """Training augmentation: random scale -> rotation -> elastic -> pad -> random crop
    to ``size`` (h, w) -> horizontal flip -> colour jitter (image only).

    ``scale`` is the (min, max) resize factor; ``rotate`` the maximum absolute angle in
    degrees (0 disables it); padding and rotated-in areas are ``ignore_index`` in the mask.
    """
    A = _albumentations()
    h, w = _check_size(size)
    try:
        lo, hi = float(scale[0]), float(scale[1])
    except (TypeError, ValueError, IndexError) as exc:
        raise ConfigError(f"scale must be (min, max) factors such as (0.5, 2.0), got {scale!r}") from exc
    if not (0 < lo <= hi):
        raise ConfigError(f"scale must be (min, max) with 0 < min <= max, got {scale!r}")
    if rotate < 0:
        raise ConfigError(f"rotate is the maximum angle in degrees and must be >= 0, got {rotate}")
    fill = tuple(image_fill) if not np.isscalar(image_fill) else image_fill
    fk = _fill_kwargs(A, fill, ignore_index)
    ops = []
    if (lo, hi) != (1.0, 1.0):
        ops.append(A.RandomScale(scale_limit=(lo - 1.0, hi - 1.0), interpolation=cv2.INTER_LINEAR,
                                 mask_interpolation=cv2.INTER_NEAREST, p=1.0))
    if rotate > 0:
        ops.append(A.Rotate(limit=(-float(rotate), float(rotate)), interpolation=cv2.INTER_LINEAR,
                            mask_interpolation=cv2.INTER_NEAREST, border_mode=cv2.BORDER_CONSTANT,
                            p=1.0, **fk))
    if elastic:
        ops.append(A.ElasticTransform(alpha=40.0, sigma=6.0, interpolation=cv2.INTER_LINEAR,
                                      mask_interpolation=cv2.INTER_NEAREST,
                                      border_mode=cv2.BORDER_CONSTANT, p=0.5, **fk))
    ops.append(A.PadIfNeeded(min_height=h, min_width=w, position="random",
                             border_mode=cv2.BORDER_CONSTANT, **fk))
    ops.append(A.RandomCrop(height=h, width=w, p=1.0))
    if hflip:
        ops.append(A.HorizontalFlip(p=0.5))
    if color_jitter:
        ops.append(A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.02, p=0.8))
    return JointTransform(A.Compose(ops))


class EvalTransform:
    """Pad image (bottom/right, ``image_fill``) and mask (``ignore_index``) to ``size``
    or to the next multiple of ``divisor``. Never resizes content."""

    def __init__(self, size=None, divisor: int = 32, ignore_index: int = 255, image_fill=MEAN_RGB_U8):
        self.size = None if size is None else _check_size(size)
        if int(divisor) < 1:
            raise ConfigError(f"divisor must be a positive integer, got {divisor}")
        self.divisor = int(divisor)
        self.ignore_index = int(ignore_index)
        self.image_fill = image_fill

    def target_size(self, h: int, w: int) -> tuple[int, int]:
        if self.size is not None:
            th, tw = self.size
            if h > th or w > tw:
                raise DataError(
                    f"image of {h}x{w} is larger than the evaluation size {th}x{tw}: evaluation "
                    f"never shrinks images; use a larger size or size=None (pad to a multiple of {self.divisor})"
                )
            return th, tw
        d = self.divisor
        return -(-h // d) * d, -(-w // d) * d

    def __call__(self, image: np.ndarray, mask: np.ndarray):
        _check_pair(image, mask)
        h, w = image.shape[:2]
        th, tw = self.target_size(h, w)
        if (th, tw) == (h, w):
            return image, mask
        fill = self.image_fill
        fill = tuple(int(v) for v in fill) if not np.isscalar(fill) else (int(fill),) * 3
        image = cv2.copyMakeBorder(image, 0, th - h, 0, tw - w, cv2.BORDER_CONSTANT, value=fill)
        if mask is not None:
            mask = cv2.copyMakeBorder(mask, 0, th - h, 0, tw - w, cv2.BORDER_CONSTANT,
                                      value=self.ignore_index)
        return image, mask

    def __repr__(self):
        return f"EvalTransform(size={self.size}, divisor={self.divisor}, ignore_index={self.ignore_index})"


def build_eval_transform(size=None, *, divisor: int = 32, ignore_index: int = 255,
                         image_fill=MEAN_RGB_U8) -> EvalTransform:
    """Evaluation transform: pad bottom/right to ``size`` (h, w) or, when ``size`` is None,
    to the next multiple of ``divisor`` (CamVid 360x480 -> 384x480). The mask is padded
    with ``ignore_index`` so predictions on padding are not scored."""
    return EvalTransform(size, divisor=divisor, ignore_index=ignore_index, image_fill=image_fill)


def pad_to_multiple(image: np.ndarray, divisor: int, value=0):
    """Pad ``image`` (H x W or H x W x C) bottom/right to multiples of ``divisor``.

    Returns ``(padded, (pad_h, pad_w))``; crop predictions with
    ``pred[:H, :W]`` (i.e. ``pred[: padded.shape[0] - pad_h, : padded.shape[1] - pad_w]``).
    """
    if int(divisor) < 1:
        raise ConfigError(f"divisor must be a positive integer, got {divisor}")
    h, w = image.shape[:2]
    pad_h = (-h) % int(divisor)
    pad_w = (-w) % int(divisor)
    if pad_h == 0 and pad_w == 0:
        return image, (0, 0)
    widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (image.ndim - 2)
    if np.isscalar(value) or image.ndim == 2:
        padded = np.pad(image, widths, mode="constant",
                        constant_values=value if np.isscalar(value) else value[0])
    else:
        padded = np.empty((h + pad_h, w + pad_w) + image.shape[2:], dtype=image.dtype)
        padded[...] = np.asarray(value, dtype=image.dtype)
        padded[:h, :w] = image
    return padded, (pad_h, pad_w)


def normalize(image: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """uint8 H x W x 3 RGB -> float32 3 x H x W, ``(image / 255 - mean) / std``."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(
            f"normalize expects an RGB image of shape HxWx3, got {getattr(image, 'shape', type(image))}"
        )
    if image.dtype != np.uint8:
        raise DataError(f"normalize expects a uint8 image (0..255), got {image.dtype}")
    mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    x = image.transpose(2, 0, 1).astype(np.float32) * np.float32(1.0 / 255.0)
    x -= mean
    x /= std
    return np.ascontiguousarray(x)
