"""Image sizes: the one parser for ``HxW`` text and the one rule for valid input sizes.

A model accepts heights and widths that are multiples of its total stride (``divisor``)
and at least ``min_size`` (default: the divisor).
"""

from __future__ import annotations

from edgeseg.errors import ConfigError


def parse_size(text) -> tuple[int, int] | None:
    """``"384x480"`` / ``"384,480"`` / ``"384"`` / ``(384, 480)`` -> ``(384, 480)``; None or "" -> None."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, (tuple, list)):
        parts = list(text)
    else:
        parts = str(text).strip().lower().replace("×", "x").replace(",", "x").split("x")
    try:
        nums = [int(p) for p in parts]
    except (TypeError, ValueError):
        nums = []
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2 or min(nums) < 1:
        raise ConfigError(f"image size {text!r} is not HxW (e.g. 384x480)")
    return nums[0], nums[1]


def valid_size(size: int, divisor: int, min_size: int = 0) -> int:
    """The smallest valid size at or above ``size`` for one dimension."""
    d = max(1, int(divisor))
    return max(int(min_size) or d, -(-int(size) // d) * d)


def nearest_valid_size(size: int, divisor: int, min_size: int = 0) -> int:
    """The valid size nearest to ``size`` for one dimension (the smaller one on a tie)."""
    d = max(1, int(divisor))
    down = max(int(min_size) or d, (int(size) // d) * d)
    up = valid_size(size, d, min_size)
    return down if size - down <= up - size else up


__all__ = ["parse_size", "valid_size", "nearest_valid_size"]
