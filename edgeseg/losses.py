"""Segmentation losses and the loss-spec parser.

Conventions shared by every loss here:

* ``logits`` are float ``N x C x H x W``; ``target`` holds integer class ids
  ``N x H x W`` (``N x 1 x H x W`` is accepted and squeezed), with
  ``ignore_index`` (default 255) marking pixels that take no part in the loss.
* If the logits' spatial size differs from the target's (a head working at
  1/8 resolution, an auxiliary head), the logits are bilinearly resized to the
  target size first.
* Every loss returns a scalar averaged over the non-ignored pixels; a batch in
  which every pixel is ignored gives ``0`` (still attached to the graph), never
  NaN.
* Label values that are neither a class id nor ``ignore_index`` raise
  :class:`~edgeseg.errors.DataError`.

Losses are combined with a small spec language, see :func:`build_loss`::

    ce                  cross-entropy
    ce+0.5*dice         cross-entropy plus half a soft Dice loss
    wce:enet            class-weighted CE, ENet weights from class pixel counts
    wce:dabnet          the same with DABNet's constant (1/ln(1.10 + p): gentler on rare classes)
    wce:median+dice     median-frequency weighted CE plus Dice
    focal:2             focal loss with gamma = 2
    ohem:0.7            online hard example mining CE, prob threshold 0.7
    ohem+0.4*boundary   OHEM CE plus 0.4 x boundary loss
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from .errors import ConfigError, DataError

__all__ = [
    "BoundaryLoss",
    "CombinedLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "FocalLoss",
    "OhemCELoss",
    "LOSS_NAMES",
    "VALID_TERMS",
    "WEIGHT_METHODS",
    "build_loss",
    "class_weights",
    "parse_loss_spec",
    "signed_distance_map",
    "suggest_loss",
]

WEIGHT_METHODS = ("inverse", "median", "enet", "dabnet")
LOSS_NAMES = ("ce", "wce", "focal", "dice", "boundary", "ohem")
VALID_TERMS = "ce, wce[:inverse|median|enet|dabnet], focal[:gamma], dice, boundary, ohem[:thresh]"

ENET_C = 1.02
DABNET_C = 1.10  # DABNet's code: the same formula with a gentler bound (weights up to ~10.5)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _prepare(logits: torch.Tensor, target: torch.Tensor, ignore_index: int):
    """Validate shapes/labels, resize logits to the target size.

    Returns ``(logits, target, valid)`` with ``target`` int64 ``N x H x W`` in
    which ignored pixels are replaced by 0 (safe for gather/one_hot) and
    ``valid`` the boolean mask of pixels that count.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise DataError("loss expects torch tensors for logits and target")
    if logits.dim() != 4:
        raise DataError(
            f"logits must be N x C x H x W, got shape {tuple(logits.shape)}"
        )
    if not logits.is_floating_point():
        raise DataError(f"logits must be a float tensor, got {logits.dtype}")
    if target.dim() == 4 and target.shape[1] == 1:
        target = target[:, 0]
    if target.dim() != 3:
        raise DataError(
            f"target must be N x H x W class ids, got shape {tuple(target.shape)}"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise DataError(
            f"target must hold integer class ids (int64), got {target.dtype}"
        )
    if target.shape[0] != logits.shape[0]:
        raise DataError(
            f"batch size of logits ({logits.shape[0]}) and target ({target.shape[0]}) differ"
        )
    target = target.long()
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(
            logits, size=target.shape[-2:], mode="bilinear", align_corners=False
        )
    num_classes = logits.shape[1]
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= num_classes))
    if bool(bad.any()):
        values = torch.unique(target[bad]).tolist()[:10]
        raise DataError(
            f"target has label values {values} outside 0..{num_classes - 1} "
            f"that are not ignore_index={ignore_index}: check the dataset's "
            "label mapping or the model's num_classes"
        )
    safe = torch.where(valid, target, torch.zeros_like(target))
    return logits, safe, valid


def _zero(logits: torch.Tensor) -> torch.Tensor:
    """A zero that stays attached to the graph (for all-ignored batches)."""
    return logits.sum() * 0.0


def _as_weight_tensor(weight, num: int | None = None) -> torch.Tensor | None:
    if weight is None:
        return None
    w = torch.as_tensor(np.asarray(weight, dtype=np.float64), dtype=torch.float32).flatten()
    if num is not None and w.numel() != num:
        raise ConfigError(f"class weights have {w.numel()} entries but there are {num} classes")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ConfigError("class weights must be finite and non-negative")
    return w


def class_weights(counts, method: str = "inverse") -> np.ndarray:
    """Per-class loss weights from class pixel counts.

    ``counts[c]`` is the number of labelled pixels of class ``c`` over the
    training set; ``p_c = counts[c] / counts.sum()``.

    * ``"inverse"``: ``w_c = 1 / p_c`` rescaled so the weights of the classes
      that occur have mean 1.
    * ``"median"``: median frequency balancing (Eigen & Fergus 2015),
      ``w_c = median(p) / p_c``, the median taken over the classes that occur.
      (Eigen & Fergus divide by the pixels of the images in which the class
      occurs; with total counts only, the dataset total is used.)
    * ``"enet"``: ``w_c = 1 / ln(1.02 + p_c)`` (Paszke et al. 2016), bounded in
      ``(1/ln 2.02, 1/ln 1.02] ~ (1.42, 50.5]``.
    * ``"dabnet"``: ``w_c = 1 / ln(1.10 + p_c)`` (DABNet's code), in ``(1.35, 10.5]``.

    Classes with a count of 0 never occur as a target, so their weight has no
    effect on CE; ``inverse`` and ``median`` give them 0, ``enet`` the formula's
    value (its maximum, ~50.5).

    Returns a float64 array of shape ``(C,)``. Raises :class:`ConfigError` for an
    unknown method and :class:`DataError` for counts that are not a 1-D array of
    finite non-negative numbers with a positive sum.
    """
    if method not in WEIGHT_METHODS:
        raise ConfigError(
            f"unknown class weight method {method!r}: use one of {', '.join(WEIGHT_METHODS)}"
        )
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or c.size == 0:
        raise DataError(f"class counts must be a 1-D array with one count per class, got shape {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise DataError("class counts must be finite and non-negative")
    total = c.sum()
    if total <= 0:
        raise DataError("class counts sum to 0: no labelled pixels to derive class weights from")
    p = c / total
    present = c > 0
    w = np.zeros_like(p)
    if method == "inverse":
        w[present] = 1.0 / p[present]
        w[present] /= w[present].mean()
    elif method == "median":
        w[present] = np.median(p[present]) / p[present]
    elif method == "enet":
        w = 1.0 / np.log(ENET_C + p)
    else:  # dabnet
        w = 1.0 / np.log(DABNET_C + p)
    return w


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------


class CrossEntropyLoss(nn.Module):
    """Cross-entropy with ``ignore_index`` and optional per-class ``weight``.

    With weights the mean is the weighted mean (divided by the sum of the
    weights of the counted pixels), as in :func:`torch.nn.functional.cross_entropy`.
    """

    def __init__(self, ignore_index: int = 255, weight=None, num_classes: int | None = None):
        super().__init__()
        self.ignore_index = int(ignore_index)
        w = _as_weight_tensor(weight, num_classes)
        self.register_buffer("weight", w if w is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, safe, valid = _prepare(logits, target, self.ignore_index)
        if self.weight is not None and self.weight.numel() != logits.shape[1]:
            raise ConfigError(
                f"CE has {self.weight.numel()} class weights but logits have {logits.shape[1]} classes"
            )
        if not bool(valid.any()):
            return _zero(logits)
        tgt = torch.where(valid, safe, torch.full_like(safe, -100))
        weight = self.weight.to(logits.dtype) if self.weight is not None else None
        loss = F.cross_entropy(logits, tgt, weight=weight, ignore_index=-100, reduction="mean")
        if not bool(torch.isfinite(loss)):  # every counted pixel has weight 0
            return _zero(logits)
        return loss


class FocalLoss(nn.Module):
    """Multi-class focal loss (Lin et al. 2017).

    ``FL = -alpha_t * (1 - p_t)^gamma * log(p_t)`` averaged over the
    non-ignored pixels (normalised by the pixel count, as in the paper, not by
    the sum of alphas). ``alpha`` is ``None`` (no weighting), a float applied to
    all classes, or a per-class sequence. ``gamma = 0`` and no alpha is plain CE.
    """

    def __init__(self, gamma: float = 2.0, alpha=None, ignore_index: int = 255,
                 num_classes: int | None = None):
        super().__init__()
        gamma = float(gamma)
        if not math.isfinite(gamma) or gamma < 0:
            raise ConfigError(f"focal gamma must be a finite number >= 0, got {gamma}")
        self.gamma = gamma
        self.ignore_index = int(ignore_index)
        if alpha is None or isinstance(alpha, (int, float)):
            if alpha is not None and (not math.isfinite(alpha) or alpha < 0):
                raise ConfigError(f"focal alpha must be >= 0, got {alpha}")
            self.scalar_alpha = None if alpha is None else float(alpha)
            self.register_buffer("alpha", None)
        else:
            self.scalar_alpha = None
            self.register_buffer("alpha", _as_weight_tensor(alpha, num_classes))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, safe, valid = _prepare(logits, target, self.ignore_index)
        if not bool(valid.any()):
            return _zero(logits)
        logp = F.log_softmax(logits.float(), dim=1)
        logp_t = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
        p_t = logp_t.exp()
        loss = -logp_t
        if self.gamma != 0:
            loss = loss * (1.0 - p_t).clamp_min(0).pow(self.gamma)
        if self.alpha is not None:
            if self.alpha.numel() != logits.shape[1]:
                raise ConfigError(
                    f"focal alpha has {self.alpha.numel()} entries but logits have {logits.shape[1]} classes"
                )
            loss = loss * self.alpha.to(loss.device)[safe]
        elif self.scalar_alpha is not None:
            loss = loss * self.scalar_alpha
        return loss[valid].mean().to(logits.dtype)


class DiceLoss(nn.Module):
    """Multi-class soft Dice loss on softmax probabilities.

    For each class ``c`` over the whole batch (ignored pixels masked out of both
    the probabilities and the one-hot target)::

        dice_c = (2 * sum(p_c * g_c) + smooth) / (sum(p_c) + sum(g_c) + smooth)

    and the loss is ``1 - mean(dice_c)`` over the classes present in the
    (non-ignored) target. Range ``[0, 1)``: ~0 for a confident correct
    prediction, ~1 for a confident wrong one.
    """

    def __init__(self, smooth: float = 1.0, ignore_index: int = 255):
        super().__init__()
        if not math.isfinite(smooth) or smooth < 0:
            raise ConfigError(f"dice smooth term must be >= 0, got {smooth}")
        self.smooth = float(smooth)
        self.ignore_index = int(ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, safe, valid = _prepare(logits, target, self.ignore_index)
        if not bool(valid.any()):
            return _zero(logits)
        num_classes = logits.shape[1]
        mask = valid.unsqueeze(1).float()
        probs = F.softmax(logits.float(), dim=1) * mask
        onehot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).float() * mask
        dims = (0, 2, 3)
        inter = (probs * onehot).sum(dims)
        denom = probs.sum(dims) + onehot.sum(dims)
        dice = (2.0 * inter + self.smooth) / (denom + self.smooth).clamp_min(1e-12)
        present = onehot.sum(dims) > 0
        return (1.0 - dice[present].mean()).to(logits.dtype)


def signed_distance_map(target: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Signed distance maps of a label map, one per class (Kervadec et al. 2019).

    ``target``: integer ``H x W`` (or ``N x H x W``). Returns float32
    ``C x H x W`` (or ``N x C x H x W``): for class ``c`` present in the image,
    the Euclidean distance to the class region outside it (positive) and
    ``-(distance to the outside - 1)`` inside it (so the inner boundary is 0);
    0 for a class absent from the image or covering it entirely. Ignored pixels
    count as outside every class (the loss masks them out).
    """
    t = np.asarray(target)
    if t.ndim == 3:
        return np.stack([signed_distance_map(x, num_classes, ignore_index) for x in t])
    if t.ndim != 2:
        raise DataError(f"signed_distance_map expects H x W labels, got shape {t.shape}")
    out = np.zeros((num_classes,) + t.shape, dtype=np.float32)
    for c in np.unique(t):
        c = int(c)
        if c == ignore_index or c < 0 or c >= num_classes:
            continue
        pos = t == c
        if pos.all():
            continue
        neg = ~pos
        out[c] = (
            ndimage.distance_transform_edt(neg) * neg
            - (ndimage.distance_transform_edt(pos) - 1.0) * pos
        )
    return out


class BoundaryLoss(nn.Module):
    """Boundary loss (Kervadec et al. 2019, "Boundary loss for highly unbalanced
    segmentation").

    ``L = mean over classes and non-ignored pixels of softmax(logits)_c * phi_c``
    where ``phi_c`` is the signed distance map of the ground truth of class
    ``c`` (:func:`signed_distance_map`, negative inside, positive outside),
    computed on the CPU with :func:`scipy.ndimage.distance_transform_edt`. The
    loss can be negative; it is lowest when the probability mass lies inside the
    true regions. Usually combined with a region loss (``ce+0.1*boundary``).
    A precomputed ``dist`` (``N x C x H x W``) may be passed to ``forward``.
    """

    def __init__(self, ignore_index: int = 255):
        super().__init__()
        self.ignore_index = int(ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, dist: torch.Tensor | None = None):
        logits, safe, valid = _prepare(logits, target, self.ignore_index)
        if not bool(valid.any()):
            return _zero(logits)
        num_classes = logits.shape[1]
        if dist is None:
            labels = torch.where(valid, safe, torch.full_like(safe, -1)).cpu().numpy()
            dist = torch.from_numpy(signed_distance_map(labels, num_classes, ignore_index=-1))
        dist = torch.as_tensor(dist, dtype=torch.float32).to(logits.device)
        if dist.shape != logits.shape:
            raise DataError(
                f"distance maps have shape {tuple(dist.shape)}, expected {tuple(logits.shape)}"
            )
        probs = F.softmax(logits.float(), dim=1)
        per_pixel = (probs * dist).mean(1)
        return per_pixel[valid].mean().to(logits.dtype)


class OhemCELoss(nn.Module):
    """Online hard example mining cross-entropy (BiSeNet / PSPNet practice).

    Keeps the pixels whose probability of the true class is below ``thresh``
    (CE above ``-log(thresh)``); if fewer than ``min_kept`` qualify, keeps the
    ``min_kept`` pixels with the highest CE instead (all pixels if there are
    fewer). ``min_kept=None`` means 1/16 of the non-ignored pixels of the batch
    (as in BiSeNet). Returns the mean CE over the kept pixels, hence always
    ``>=`` plain CE on the same batch.
    """

    def __init__(self, thresh: float = 0.7, min_kept: int | None = None, ignore_index: int = 255,
                 weight=None, num_classes: int | None = None):
        super().__init__()
        thresh = float(thresh)
        if not (0.0 < thresh <= 1.0):
            raise ConfigError(f"OHEM threshold is a probability in (0, 1], got {thresh}")
        if min_kept is not None and (int(min_kept) != min_kept or min_kept < 0):
            raise ConfigError(f"OHEM min_kept must be a non-negative integer, got {min_kept}")
        self.thresh = thresh
        self.loss_thresh = -math.log(thresh)
        self.min_kept = None if min_kept is None else int(min_kept)
        self.ignore_index = int(ignore_index)
        w = _as_weight_tensor(weight, num_classes)
        self.register_buffer("weight", w if w is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, safe, valid = _prepare(logits, target, self.ignore_index)
        n_valid = int(valid.sum())
        if n_valid == 0:
            return _zero(logits)
        weight = self.weight.to(logits.device, torch.float32) if self.weight is not None else None
        loss = F.cross_entropy(logits.float(), safe, weight=weight, reduction="none")[valid]
        min_kept = n_valid // 16 if self.min_kept is None else self.min_kept
        min_kept = max(1, min(min_kept, n_valid))
        hard = loss[loss > self.loss_thresh]
        if hard.numel() < min_kept:
            hard = torch.topk(loss, min_kept, sorted=False).values
        return hard.mean().to(logits.dtype)


# ---------------------------------------------------------------------------
# spec parsing and the combined loss
# ---------------------------------------------------------------------------

_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
_TERM_RE = re.compile(r"^(?:(?P<w>[^*]*)\*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<arg>.*))?$")


def _spec_error(spec: str, msg: str) -> ConfigError:
    return ConfigError(f"bad loss spec {spec!r}: {msg}; valid terms: {VALID_TERMS} "
                       "(e.g. 'ce+0.5*dice', 'wce:enet', 'ohem:0.7+0.4*boundary')")


def parse_loss_spec(spec: str) -> list[tuple[float, str, str | float | None]]:
    """Parse a loss spec into ``[(weight, name, arg), ...]``.

    Grammar: terms joined by ``+``; each term is ``[WEIGHT*]NAME[:ARG]`` with
    ``WEIGHT`` a non-negative number (default 1) and ``NAME`` one of
    ``ce, wce, focal, dice, boundary, ohem``. ``ARG`` is normalised: ``wce``
    gets its method (default ``"inverse"``), ``focal`` its gamma (float,
    default 2.0), ``ohem`` its threshold (float in (0, 1], default 0.7); the
    others take no argument (``None``). Whitespace is ignored, names are
    case-insensitive. Anything else raises :class:`ConfigError` naming the
    valid terms.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise _spec_error(str(spec), "the spec is empty")
    out: list[tuple[float, str, str | float | None]] = []
    for raw in spec.split("+"):
        raw = re.sub(r"\s*([*:])\s*", r"\1", raw.strip())
        if not raw:
            raise _spec_error(spec, "empty term (check for a stray '+')")
        m = _TERM_RE.match(raw)
        if m is None:
            raise _spec_error(spec, f"cannot read term {raw!r}, expected [WEIGHT*]NAME[:ARG]")
        wtxt, name, arg = m.group("w"), m.group("name").lower(), m.group("arg")
        if wtxt is None:
            weight = 1.0
        else:
            if not re.fullmatch(_NUMBER, wtxt):
                raise _spec_error(spec, f"weight {wtxt!r} of term {raw!r} is not a non-negative number")
            weight = float(wtxt)
            if not math.isfinite(weight):
                raise _spec_error(spec, f"weight {wtxt!r} of term {raw!r} is not finite")
        if name not in LOSS_NAMES:
            raise _spec_error(spec, f"unknown loss term {name!r}")
        if arg is not None and arg == "":
            raise _spec_error(spec, f"term {raw!r} has an empty ':' argument")
        if name == "wce":
            method = "inverse" if arg is None else arg.lower()
            if method not in WEIGHT_METHODS:
                raise _spec_error(spec, f"wce method {arg!r} is not one of {', '.join(WEIGHT_METHODS)}")
            parsed: str | float | None = method
        elif name == "focal":
            if arg is None:
                parsed = 2.0
            else:
                if not re.fullmatch(_NUMBER, arg):
                    raise _spec_error(spec, f"focal gamma {arg!r} is not a non-negative number")
                parsed = float(arg)
        elif name == "ohem":
            if arg is None:
                parsed = 0.7
            else:
                if not re.fullmatch(_NUMBER, arg):
                    raise _spec_error(spec, f"ohem threshold {arg!r} is not a number")
                parsed = float(arg)
                if not (0.0 < parsed <= 1.0):
                    raise _spec_error(spec, f"ohem threshold {arg!r} must be a probability in (0, 1]")
        else:
            if arg is not None:
                raise _spec_error(spec, f"term {name!r} takes no ':' argument (got {arg!r})")
            parsed = None
        out.append((weight, name, parsed))
    return out


class CombinedLoss(nn.Module):
    """Weighted sum of loss terms, with auxiliary-output support.

    ``forward(outputs, target)``: ``outputs`` is a logits tensor or a
    tuple/list ``(main, *aux)``; the result is
    ``loss(main) + aux_weight * sum(loss(a) for a in aux)`` where ``loss`` is
    the weighted sum of the terms. Aux logits at a lower resolution are resized
    to the target.

    After each call, :attr:`last_terms` maps each term's label (``"ce"``,
    ``"dice"``, ``"wce:enet"``, ``"ohem:0.7"``...; unweighted values on
    the main output; a repeated term gets ``"#2"`` appended) plus ``"aux"``
    (the summed unweighted aux loss, when aux outputs were given) and
    ``"total"`` to Python floats, for logging.
    """

    def __init__(self, terms: Sequence[tuple[float, str, nn.Module]], num_classes: int,
                 aux_weight: float = 0.4, ignore_index: int = 255):
        super().__init__()
        if not terms:
            raise ConfigError("a combined loss needs at least one term")
        aux_weight = float(aux_weight)
        if not math.isfinite(aux_weight) or aux_weight < 0:
            raise ConfigError(f"aux_weight must be a finite number >= 0, got {aux_weight}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.aux_weight = aux_weight
        self.weights = [float(w) for w, _, _ in terms]
        labels: list[str] = []
        for _, label, _ in terms:
            base, k = label, 2
            while label in labels:
                label = f"{base}#{k}"
                k += 1
            labels.append(label)
        self.labels = labels
        self.terms = nn.ModuleList([m for _, _, m in terms])
        self._last: dict[str, torch.Tensor] = {}

    @property
    def last_terms(self) -> dict[str, float]:
        """The last call's term values as floats (empty before the first call)."""
        return {k: float(v) for k, v in self._last.items()}

    def _single(self, logits: torch.Tensor, target: torch.Tensor, record: bool) -> torch.Tensor:
        if not isinstance(logits, torch.Tensor):
            raise DataError(f"loss expects logits tensors, got {type(logits).__name__}")
        if logits.dim() == 4 and logits.shape[1] != self.num_classes:
            raise DataError(
                f"the loss was built for {self.num_classes} classes but the logits have "
                f"{logits.shape[1]} channels: check the model's num_classes"
            )
        total = None
        for w, label, term in zip(self.weights, self.labels, self.terms):
            value = term(logits, target)
            if record:
                self._last[label] = value.detach()
            contrib = value * w
            total = contrib if total is None else total + contrib
        return total

    def forward(self, outputs, target: torch.Tensor) -> torch.Tensor:
        self._last = {}
        if isinstance(outputs, (tuple, list)):
            if len(outputs) == 0:
                raise DataError("loss got an empty tuple of outputs")
            main, aux = outputs[0], list(outputs[1:])
        else:
            main, aux = outputs, []
        total = self._single(main, target, record=True)
        if aux:
            aux_sum = None
            for a in aux:
                v = self._single(a, target, record=False)
                aux_sum = v if aux_sum is None else aux_sum + v
            self._last["aux"] = aux_sum.detach()
            total = total + self.aux_weight * aux_sum
        self._last["total"] = total.detach()
        return total

    def extra_repr(self) -> str:
        return " + ".join(f"{w:g}*{lab}" for w, lab in zip(self.weights, self.labels)) + (
            f", aux_weight={self.aux_weight:g}"
        )


def build_loss(spec: str, num_classes: int, ignore_index: int = 255, class_counts=None,
               aux_weight: float = 0.4) -> CombinedLoss:
    """Build a :class:`CombinedLoss` from a spec such as ``"ohem:0.7+0.4*boundary"``.

    See :func:`parse_loss_spec` for the grammar. ``class_counts`` (per-class
    pixel counts, length ``num_classes``) is required by ``wce`` terms. Bad
    specs or options raise :class:`ConfigError`.
    """
    terms_spec = parse_loss_spec(spec)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    counts = None
    if class_counts is not None:
        counts = np.asarray(class_counts, dtype=np.float64).reshape(-1)
        if counts.size != num_classes:
            raise ConfigError(
                f"class_counts has {counts.size} entries but num_classes is {num_classes}"
            )
    terms: list[tuple[float, str, nn.Module]] = []
    for weight, name, arg in terms_spec:
        if name == "ce":
            mod: nn.Module = CrossEntropyLoss(ignore_index=ignore_index)
            label = "ce"
        elif name == "wce":
            if counts is None:
                raise ConfigError(
                    f"loss term 'wce:{arg}' needs the per-class pixel counts of the training set "
                    "(class_counts) to derive class weights; pass them or use 'ce'"
                )
            mod = CrossEntropyLoss(ignore_index=ignore_index,
                                   weight=class_weights(counts, arg), num_classes=num_classes)
            label = f"wce:{arg}"
        elif name == "focal":
            mod = FocalLoss(gamma=arg, ignore_index=ignore_index)
            label = f"focal:{arg:g}"
        elif name == "dice":
            mod = DiceLoss(ignore_index=ignore_index)
            label = "dice"
        elif name == "boundary":
            mod = BoundaryLoss(ignore_index=ignore_index)
            label = "boundary"
        else:  # ohem
            mod = OhemCELoss(thresh=arg, ignore_index=ignore_index)
            label = f"ohem:{arg:g}"
        terms.append((weight, label, mod))
    return CombinedLoss(terms, num_classes=num_classes, aux_weight=aux_weight,
                        ignore_index=ignore_index)


# ---------------------------------------------------------------------------
# choosing a loss from the data (``--loss auto``, ``edgeseg data check``)
# ---------------------------------------------------------------------------

# Below this share of the labelled pixels a class is rare; over this ratio the classes are imbalanced.
RARE_SHARE = 0.01
IMBALANCE_RATIO = 10.0


def suggest_loss(class_counts, class_names: Sequence[str]) -> tuple[str, str]:
    """``(spec, why)``: the loss edgeseg suggests for training data with these per-class pixel counts.

    Plain CE where the classes are balanced; a binary task with a small foreground adds
    Dice (an overlap score that is blind to how few pixels the foreground has); a multi-
    class task with rare classes takes ENet's class weights (1 / ln(1.02 + share)).
    """
    counts = np.asarray(class_counts, dtype=np.float64).reshape(-1)
    names = [str(n) for n in class_names]
    total = counts.sum()
    if total <= 0:
        return "ce", "no labelled pixels to weigh"
    share = counts / total
    present = np.flatnonzero(counts)
    small = int(present[np.argmin(share[present])])
    ratio = share[present].max() / share[small]
    rare = [names[k] for k in present if share[k] < RARE_SHARE]
    if ratio <= IMBALANCE_RATIO and not rare:
        return "ce", f"balanced enough: the largest class has {ratio:.1f}x the pixels of the smallest"
    if len(names) == 2:
        return "ce+dice", (f"'{names[small]}' is {share[small]:.1%} of the labelled pixels: Dice scores the overlap "
                           f"of that class, whatever its size")
    big = int(present[np.argmax(share[present])])
    if rare:
        what = "rare classes: " + ", ".join(f"{n} {share[names.index(n)]:.1%}" for n in rare[:4]) + \
               " of the labelled pixels"
    else:
        what = f"imbalanced: '{names[small]}' has {ratio:.0f}x fewer pixels than '{names[big]}'"
    return "wce:enet", f"{what}; ENet class weights lift the small classes"
