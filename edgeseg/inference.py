"""Inference modes: whole image, overlapping tiles, test-time augmentation, shift-and-stitch.

Every function takes a *normalised* float tensor ``x`` of shape N x 3 x H x W (see
:func:`edgeseg.data.normalize`) and works with any :class:`~edgeseg.models.base.SegmentationModel`
(or any module that maps N x 3 x H x W to N x C x H x W logits and, optionally, has
``size_divisor`` / ``min_size`` attributes). Models run in eval mode under ``torch.no_grad()``;
a model that was in training mode is put back in training mode afterwards. ``x`` is not moved:
put it on the model's device (:func:`infer_image` does that for you).

What comes back, always at the input resolution N x C x H x W:

* :func:`predict_logits` -> **logits** (the building block of the others);
* :func:`sliding_window`, :func:`tta`, :func:`infer` -> softmax **probabilities** (they
  average predictions, and averaging is done on probabilities);
* :func:`shift_and_stitch` -> whatever the coarse callable returns, interleaved to full
  resolution (logits for :class:`StridedOutput`);
* :func:`infer_image` -> ``(class map H x W uint8, probabilities C x H x W float32)`` numpy.

Padding is bottom/right with 0, which after normalisation is the dataset's mean colour.
Bad option values raise :class:`~edgeseg.errors.ConfigError` with a one-line message.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import ConfigError, DataError, InputSizeError, ModelError
from edgeseg.sizes import nearest_valid_size, valid_size

__all__ = [
    "MODES",
    "predict_logits",
    "sliding_window",
    "tile_starts",
    "blend_window",
    "tta",
    "shift_and_stitch",
    "StridedOutput",
    "infer",
    "infer_image",
]

MODES = ("whole", "tile", "tta")
BLENDS = ("gaussian", "mean")
COMBINES = ("mean", "max")


# --- helpers ---------------------------------------------------------------------------

@contextlib.contextmanager
def _eval_mode(model):
    """Eval mode for the duration of the block (restores training mode after)."""
    if not isinstance(model, nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _divisor(model) -> tuple[int, int]:
    d = int(getattr(model, "size_divisor", 1) or 1)
    return d, int(getattr(model, "min_size", 0) or 0)


def _valid_size(model, size: int) -> int:
    """Smallest valid size >= ``size`` for one dimension."""
    return valid_size(size, *_divisor(model))


def _nearest_valid(model, size: int) -> int:
    return nearest_valid_size(size, *_divisor(model))


def _check_input(x) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise DataError(
            f"inference expects a normalised float tensor N x 3 x H x W, got "
            f"{type(x).__name__ if not isinstance(x, torch.Tensor) else f'{x.dtype} {tuple(x.shape)}'}"
        )
    if x.shape[0] < 1 or x.shape[-2] < 1 or x.shape[-1] < 1:
        raise DataError(f"inference got an empty tensor of shape {tuple(x.shape)}")


def _pair(value, what: str) -> tuple[int, int]:
    try:
        if isinstance(value, (int, np.integer)):
            h = w = int(value)
        else:
            seq = list(value)
            if len(seq) != 2:
                raise ValueError
            h, w = seq
            if float(h) != int(h) or float(w) != int(w):
                raise ValueError
            h, w = int(h), int(w)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be an integer or (height, width) in pixels, got {value!r}") from exc
    if h < 1 or w < 1:
        raise ConfigError(f"{what} must be positive (height, width), got {value!r}")
    return h, w


def _pad_br(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pad bottom/right with zeros to at least h x w."""
    ph, pw = max(0, h - x.shape[-2]), max(0, w - x.shape[-1])
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="constant", value=0.0)


def _run(model, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if isinstance(out, (tuple, list)):  # a model with auxiliary heads left in training mode
        out = out[0]
    return out


# --- 1. whole image --------------------------------------------------------------------

@torch.no_grad()
def predict_logits(model, x: torch.Tensor) -> torch.Tensor:
    """Logits N x C x H x W for a normalised batch N x 3 x H x W of any size.

    ``x`` is padded bottom/right with 0 (the mean colour) to the nearest size the model
    accepts (``size_divisor`` and ``min_size``), run in eval mode, and the logits cropped
    back to H x W.
    """
    _check_input(x)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph, pw = _valid_size(model, h), _valid_size(model, w)
    with _eval_mode(model):
        out = _run(model, _pad_br(x, ph, pw))
    if out.ndim != 4 or out.shape[-2:] != (ph, pw):
        raise ModelError(
            f"{type(model).__name__} returned {tuple(out.shape)} for an input of {ph}x{pw}: "
            f"inference needs N x C x H x W logits at the input resolution"
        )
    return out[..., :h, :w]


# --- 2. overlapping tiles --------------------------------------------------------------

def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` every ``stride`` pixels covering ``length``;
    the last tile is aligned to the border (one tile at 0 when ``length <= tile``)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def blend_window(tile: Sequence[int], blend: str = "gaussian", sigma: float = 0.125,
                 device=None, dtype=torch.float32) -> torch.Tensor:
    """Per-pixel weights (tile_h x tile_w) for blending tiles.

    ``"gaussian"``: a separable Gaussian centred on the tile, standard deviation ``sigma``
    times the tile size (nnU-Net uses 1/8), scaled to a maximum of 1: predictions near a
    tile's centre (which saw the most context) dominate those near its edges.
    ``"mean"``: all ones (plain average of the overlapping tiles).
    """
    th, tw = tile
    if blend == "mean":
        return torch.ones(th, tw, device=device, dtype=dtype)
    if blend != "gaussian":
        raise ConfigError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ConfigError(f"sigma must be a positive fraction of the tile size, got {sigma!r}")

    def g(n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float64)
        c = (n - 1) / 2.0
        s = sigma * n
        return torch.exp(-((i - c) ** 2) / (2.0 * s * s))

    w = torch.outer(g(th), g(tw))
    w = w / w.max()
    w = w.clamp_min(1e-6)  # every pixel keeps a (tiny) weight, so a lone tile still counts
    return w.to(device=device, dtype=dtype)


def _check_tile(model, tile) -> tuple[int, int]:
    th, tw = _pair(tile, "tile")
    d, lo = _divisor(model)
    ok = th % d == 0 and tw % d == 0 and th >= lo and tw >= lo
    err = None
    if ok and hasattr(model, "check_input_size"):
        try:
            model.check_input_size(th, tw)
        except InputSizeError as exc:
            ok, err = False, exc
    if not ok:
        nh, nw = _nearest_valid(model, th), _nearest_valid(model, tw)
        exc = ConfigError(
            f"tile {th}x{tw} is not valid for {type(model).__name__} (height and width must be "
            f"multiples of {d}, at least {lo}): use tile {nh}x{nw}"
        )
        raise exc from err
    return th, tw


def _check_stride(tile, overlap, stride) -> tuple[int, int]:
    th, tw = tile
    if stride is not None:
        if overlap is not None:
            raise ConfigError("give either overlap (a fraction of the tile) or stride (pixels), not both")
        sh, sw = _pair(stride, "stride")
        if sh > th or sw > tw:
            raise ConfigError(f"stride {sh}x{sw} is larger than the tile {th}x{tw}: tiles would leave gaps")
        return sh, sw
    overlap = 0.33 if overlap is None else overlap
    try:
        ov = float(overlap)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"overlap must be a fraction in [0, 1), got {overlap!r}") from exc
    if not (0.0 <= ov < 1.0):
        raise ConfigError(f"overlap must be a fraction in [0, 1), got {overlap!r}")
    return max(1, int(th * (1.0 - ov))), max(1, int(tw * (1.0 - ov)))


@torch.no_grad()
def sliding_window(model, x: torch.Tensor, tile, *, overlap: float | None = None,
                   stride=None, blend: str = "gaussian", batch_size: int = 4,
                   sigma: float = 0.125) -> torch.Tensor:
    """Softmax probabilities N x C x H x W from overlapping tiles.

    ``tile`` is (h, w) (or one int) and must be a size the model accepts, else a
    ConfigError names the nearest valid tile. Tiles step by ``stride`` (h, w) pixels, or by
    ``tile * (1 - overlap)`` with ``overlap`` a fraction in [0, 1) (default 0.33); the last
    tile in each direction is aligned to the image border. Images smaller than a tile are
    padded bottom/right with 0 (the mean colour). Each tile's probabilities are weighted by
    :func:`blend_window` (``"gaussian"`` or ``"mean"``), summed, and divided by the summed
    weights. ``batch_size`` tiles run per forward pass.
    """
    _check_input(x)
    th, tw = _check_tile(model, tile)
    sh, sw = _check_stride((th, tw), overlap, stride)
    if blend not in BLENDS:
        raise ConfigError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    n, _, h, w = x.shape
    xp = _pad_br(x, th, tw)
    hp, wp = int(xp.shape[-2]), int(xp.shape[-1])
    weight = blend_window((th, tw), blend, sigma, device=x.device, dtype=torch.float32)
    jobs = [(i, y, x0) for i in range(n) for y in tile_starts(hp, th, sh) for x0 in tile_starts(wp, tw, sw)]
    acc = None
    norm = torch.zeros(hp, wp, device=x.device, dtype=torch.float32)
    for y, x0 in {(y, x0) for _, y, x0 in jobs}:
        norm[y:y + th, x0:x0 + tw] += weight
    with _eval_mode(model):
        for b in range(0, len(jobs), int(batch_size)):
            chunk = jobs[b:b + int(batch_size)]
            batch = torch.stack([xp[i, :, y:y + th, x0:x0 + tw] for i, y, x0 in chunk])
            probs = predict_logits(model, batch).float().softmax(1)
            if acc is None:
                acc = torch.zeros(n, probs.shape[1], hp, wp, device=x.device, dtype=torch.float32)
            probs = probs * weight
            for k, (i, y, x0) in enumerate(chunk):
                acc[i, :, y:y + th, x0:x0 + tw] += probs[k]
    return (acc / norm)[..., :h, :w]


# --- 3. test-time augmentation ---------------------------------------------------------

def _scaled_size(model, size: int, scale: float) -> int:
    d, lo = _divisor(model)
    return max(lo, int(math.floor(size * scale / d + 0.5)) * d)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def tta(model, x: torch.Tensor, scales: Sequence[float] = (0.75, 1.0, 1.25), flip: bool = True,
        combine: str = "mean", *, tile=None, **tile_opts) -> torch.Tensor:
    """Softmax probabilities N x C x H x W averaged over scales and horizontal flips.

    For each scale ``s`` the image is resized (bilinear) to ``s * (H, W)`` rounded to the
    model's ``size_divisor`` (at least ``min_size``; no resize when that is already H x W),
    predicted, and with ``flip`` also predicted mirrored left-right (the output mirrored
    back); every prediction's probabilities are resized back to H x W (bilinear) and
    combined: ``"mean"`` averages them, ``"max"`` takes the per-class maximum and
    renormalises. With ``tile=(h, w)`` each scale is predicted by :func:`sliding_window`
    (``tile_opts``: overlap, stride, blend, batch_size, sigma) instead of whole.

    With ``flip=True`` the result is mirror-symmetric by construction:
    ``tta(flip(x)) == flip(tta(x))`` (up to float rounding in the resizes).
    """
    _check_input(x)
    if isinstance(scales, (int, float)):
        scales = (scales,)
    try:
        scales = [float(s) for s in scales]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"scales must be positive numbers such as (0.75, 1.0, 1.25), got {scales!r}") from exc
    if not scales or any(not (s > 0 and math.isfinite(s)) for s in scales):
        raise ConfigError(f"scales must be positive numbers such as (0.75, 1.0, 1.25), got {scales!r}")
    if combine not in COMBINES:
        raise ConfigError(f"combine must be one of {', '.join(COMBINES)}, got {combine!r}")
    if tile is not None:
        _check_tile(model, tile)
        bad = set(tile_opts) - {"overlap", "stride", "blend", "batch_size", "sigma"}
        if bad:
            raise ConfigError(f"unknown tile options for tta: {', '.join(sorted(bad))}")
    elif tile_opts:
        raise ConfigError(f"options {', '.join(sorted(tile_opts))} need tile=(h, w)")

    def probs_of(inp: torch.Tensor) -> torch.Tensor:
        if tile is not None:
            return sliding_window(model, inp, tile, **tile_opts)
        return predict_logits(model, inp).float().softmax(1)

    h, w = int(x.shape[-2]), int(x.shape[-1])
    out = None
    count = 0
    with _eval_mode(model):
        for s in scales:
            xs = _resize(x, (_scaled_size(model, h, s), _scaled_size(model, w, s)))
            preds = [probs_of(xs)]
            if flip:
                preds.append(probs_of(xs.flip(-1)).flip(-1))
            for p in preds:
                p = _resize(p, (h, w))
                if out is None:
                    out = p.clone()
                elif combine == "mean":
                    out += p
                else:
                    out = torch.maximum(out, p)
                count += 1
    if combine == "mean":
        return out / count
    return out / out.sum(1, keepdim=True)


# --- 4. shift-and-stitch ---------------------------------------------------------------

class StridedOutput(nn.Module):
    """A coarse (stride ``factor``) output for any SegmentationModel, for demonstrating
    and testing :func:`shift_and_stitch` on our models.

    Our models already return logits at the input resolution; this wrapper average-pools
    them by ``factor`` (H and W must be divisible by ``factor``), giving the
    N x C x H/f x W/f output a strided network without final upsampling would give.
    """

    def __init__(self, model, factor: int):
        super().__init__()
        self.model = model
        self.factor = _check_factor(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.factor
        if x.shape[-2] % f or x.shape[-1] % f:
            raise ConfigError(
                f"StridedOutput needs height and width divisible by factor {f}, got {x.shape[-2]}x{x.shape[-1]}"
            )
        logits = predict_logits(self.model, x)
        return F.avg_pool2d(logits, f) if f > 1 else logits


def _check_factor(factor) -> int:
    try:
        f = int(factor)
        if f != factor:
            raise ValueError
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"factor must be a positive integer (the output stride), got {factor!r}") from exc
    if f < 1:
        raise ConfigError(f"factor must be a positive integer (the output stride), got {factor!r}")
    return f


@torch.no_grad()
def shift_and_stitch(coarse: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, factor: int,
                     *, batch_size: int | None = None) -> torch.Tensor:
    """Dense N x C x H x W output from a callable whose output is downsampled by ``factor``.

    Shift-and-stitch (Long et al., "Fully Convolutional Networks for Semantic
    Segmentation", 2015, section 3.2; Sermanet et al., OverFeat, 2014): ``coarse`` maps
    N x 3 x H x W to N x C x H/f x W/f. It is run on the f*f inputs shifted by
    (dy, dx) in [0, f)^2 (the top-left dy rows / dx columns cropped, bottom/right padded with
    0, the mean colour), and the outputs interleaved so that output pixel
    (y*f + dy, x*f + dx) is coarse output pixel (y, x) of shift (dy, dx). H and W not
    divisible by f are padded bottom/right and the result cropped back.

    Returns what ``coarse`` returns (logits for :class:`StridedOutput`), at full resolution.
    The shifted inputs go through ``coarse`` ``batch_size`` images at a time (default: N,
    i.e. one call per shift). Modules are run in eval mode.
    """
    _check_input(x)
    f = _check_factor(factor)
    n, _, h, w = x.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    xp = _pad_br(x, hp, wp)
    shifts = [(dy, dx) for dy in range(f) for dx in range(f)]
    shifted = [_pad_br(xp[..., dy:, dx:], hp, wp) for dy, dx in shifts]
    bs = n if batch_size is None else int(batch_size)
    if bs < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    inputs = torch.cat(shifted, 0)  # (f*f*N) x 3 x hp x wp, shift-major
    outs = []
    with _eval_mode(coarse):
        for b in range(0, inputs.shape[0], bs):
            out = _run(coarse, inputs[b:b + bs])
            outs.append(out)
    out = torch.cat(outs, 0)
    hc, wc = hp // f, wp // f
    if out.ndim != 4 or out.shape[0] != f * f * n or out.shape[-2:] != (hc, wc):
        raise ConfigError(
            f"shift_and_stitch: the coarse output for a {hp}x{wp} input is {tuple(out.shape[-2:])}, "
            f"expected {hc}x{wc} (input / factor {f}): is factor the network's output stride?"
        )
    c = out.shape[1]
    # (dy, dx, n, c, y, x) -> (n, c, y, dy, x, dx) -> (n, c, y*f + dy, x*f + dx)
    out = out.reshape(f, f, n, c, hc, wc).permute(2, 3, 4, 0, 5, 1).reshape(n, c, hp, wp)
    return out[..., :h, :w]


# --- 5. one entry point ----------------------------------------------------------------

_MODE_OPTS = {
    "whole": set(),
    "tile": {"tile", "overlap", "stride", "blend", "batch_size", "sigma"},
    "tta": {"scales", "flip", "combine", "tile", "overlap", "stride", "blend", "batch_size", "sigma"},
}


@torch.no_grad()
def infer(model, x: torch.Tensor, *, mode: str = "whole", **opts) -> torch.Tensor:
    """Softmax probabilities N x C x H x W for a normalised batch, by ``mode``:

    * ``"whole"``: the whole image at once (:func:`predict_logits`, padded to the stride);
    * ``"tile"``: :func:`sliding_window` (needs ``tile=(h, w)``; overlap, stride, blend,
      batch_size, sigma);
    * ``"tta"``: :func:`tta` (scales, flip, combine, and optionally tile + tile options).
    """
    if mode not in _MODE_OPTS:
        raise ConfigError(f"inference mode must be one of {', '.join(MODES)}, got {mode!r}")
    bad = set(opts) - _MODE_OPTS[mode]
    if bad:
        allowed = ", ".join(sorted(_MODE_OPTS[mode])) or "none"
        raise ConfigError(f"unknown option(s) {', '.join(sorted(bad))} for mode '{mode}' (allowed: {allowed})")
    if mode == "whole":
        return predict_logits(model, x).float().softmax(1)
    if mode == "tile":
        if opts.get("tile") is None:
            raise ConfigError("mode 'tile' needs a tile size, e.g. tile=(512, 512)")
        opts = dict(opts)
        tile = opts.pop("tile")
        return sliding_window(model, x, tile, **opts)
    return tta(model, x, **opts)


def _model_device(model) -> torch.device:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
        for b in model.buffers():
            return b.device
    return torch.device("cpu")


@torch.no_grad()
def infer_image(model, info, image_rgb: np.ndarray, *, mode: str = "whole", **opts):
    """``(class map H x W uint8, probabilities C x H x W float32)`` for one uint8 RGB image.

    The image is normalised with ``info.mean`` / ``info.std`` (a DatasetInfo), moved to the
    model's device and predicted with :func:`infer` (``mode`` and ``opts`` as there).
    """
    from edgeseg.data import normalize

    x = torch.from_numpy(normalize(image_rgb, info.mean, info.std))[None].to(_model_device(model))
    probs = infer(model, x, mode=mode, **opts)[0]
    classes = probs.argmax(0).to(torch.uint8).cpu().numpy()
    return classes, probs.float().cpu().numpy()
