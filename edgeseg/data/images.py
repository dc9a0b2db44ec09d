"""Image files read with their size checked first.

Every reader of a user's image (predict, segment, eval, train, data check, build and compress
calibration, the demo's folder source) goes through :func:`imread`: the width and height are
read from the file's header with Pillow's lazy ``Image.open`` (it parses the header and
decodes nothing) and checked against a pixel budget before OpenCV decodes a byte. A 1 MB PNG
whose header claims 20000 x 20000 pixels is one line, not 1.2 GB of pixels. Video frames are
checked the same way from the size the capture reports (:func:`check_frame_size`).

The budget is :data:`DEFAULT_MAX_PIXELS`; ``edgeseg --max-image-pixels N`` or the
:data:`MAX_PIXELS_ENV` environment variable raises it.
"""

from __future__ import annotations

import os
import struct
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np

from edgeseg.errors import ConfigError, DataError, require

MAX_PIXELS_ENV = "EDGESEG_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 8192 * 8192  # 67 MP: an 8K x 8K image, 200 MB once decoded
_CV_LIMIT_ENV = "OPENCV_IO_MAX_IMAGE_PIXELS"  # OpenCV's own cap, CV_IO_MAX_IMAGE_PIXELS (2**30 by default)
_PILLOW = threading.Lock()  # Pillow's bomb limit is a module global: swapped under a lock

__all__ = ["ImageTooLarge", "MAX_PIXELS_ENV", "DEFAULT_MAX_PIXELS", "max_pixels", "image_size", "imread",
           "check_frame_size"]


class ImageTooLarge(DataError):
    """An image or video frame over the pixel budget (readers that skip bad files stop on it)."""


def max_pixels() -> int:
    """The pixel budget: :data:`MAX_PIXELS_ENV` when set, else :data:`DEFAULT_MAX_PIXELS`."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text))
    except (ValueError, OverflowError):
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_PIXELS_ENV}={text!r} is not a positive number of pixels: "
                          f"give e.g. {DEFAULT_MAX_PIXELS} (unset it for that default)")
    if value > 2 ** 30:  # else OpenCV refuses what the user allowed; read at its first decode
        os.environ.setdefault(_CV_LIMIT_ENV, str(value))
    return value


def _fix() -> str:
    return f"pass `edgeseg --max-image-pixels N ...` (or set {MAX_PIXELS_ENV}=N) to read it anyway"


def _header(path: Path, what: str):
    """(width, height, format, frames > 1) from the header alone; DataError when unreadable."""
    image = require("PIL.Image", None, "reading image headers")
    with _PILLOW, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's own bomb warning: our budget decides
        saved, image.MAX_IMAGE_PIXELS = image.MAX_IMAGE_PIXELS, None
        try:
            with image.open(path) as im:
                return im.size[0], im.size[1], im.format, bool(getattr(im, "is_animated", False))
        except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
            # "cannot identify" is Pillow's word for not-an-image; say why for the rest (a 12-bit JPEG)
            why = "" if isinstance(exc, image.UnidentifiedImageError) else f": {str(exc)[:120]}"
            raise DataError(f"cannot read {what} {path} (corrupt or not an image{why}): replace it, or save it "
                            f"as an 8-bit PNG") from exc
        finally:
            image.MAX_IMAGE_PIXELS = saved


# A JPEG with a multi-picture (MPO) index is a phone photo plus previews: its first image is the photo.
_FIRST_FRAME_IS_THE_IMAGE = {"MPO", "JPEG"}


def image_size(path, what: str = "image") -> tuple[int, int]:
    """(height, width) from the header, checked against the budget; nothing is decoded."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist: restore it or remove it from the list")
    w, h, fmt, frames = _header(path, what)
    if w < 1 or h < 1:
        raise DataError(f"cannot read {what} {path} (its header says {w}x{h} pixels): replace or remove it")
    limit = max_pixels()
    if w * h > limit:
        raise ImageTooLarge(f"{what} {path} is {w}x{h} ({w * h / 1e6:.1f} megapixels), over the {limit / 1e6:.1f}"
                        f"-megapixel limit (checked from its header, before decoding): {_fix()}")
    if frames and fmt not in _FIRST_FRAME_IS_THE_IMAGE:
        raise DataError(f"{what} {path} is an animated or multi-page {fmt} file: edgeseg reads single images; "
                        f"save the frame you want as its own PNG (a video goes to `edgeseg demo --source`)")
    return h, w


def imread(path, flags: int = cv2.IMREAD_COLOR, what: str = "image") -> np.ndarray:
    """``cv2.imread`` after :func:`image_size`; DataError (never cv2.error) when it fails."""
    image_size(path, what)
    try:
        img = cv2.imread(str(path), flags)
    except cv2.error as exc:  # OpenCV's own size cap, or a decoder that gave up
        first = (str(exc).strip().splitlines() or ["cv2.error"])[-1][:160]
        raise DataError(f"cannot decode {what} {path} ({first}): replace it, or convert it to PNG") from exc
    if img is None or img.size == 0:
        raise DataError(f"cannot read {what} {path} (corrupt or not an image): replace or remove it")
    return img


def check_frame_size(width, height, source: str) -> None:
    """A video's frame size (as the capture reports it) against the same budget."""
    w, h = int(width or 0), int(height or 0)
    limit = max_pixels()
    if w * h > limit:
        raise ImageTooLarge(f"{source} has {w}x{h} frames ({w * h / 1e6:.1f} megapixels), over the "
                        f"{limit / 1e6:.1f}-megapixel limit: {_fix()}")
