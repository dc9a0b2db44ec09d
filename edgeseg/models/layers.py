"""Building blocks shared by the architectures.

Everything here exports to ONNX (opset 17) with the TorchScript exporter and runs in
ONNX Runtime; keep it that way (no adaptive pooling to sizes other than 1, no
data-dependent shapes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import ModelError


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10%.

    Hardware kernels (and MobileNet's reference widths) work on multiples of 8.
    """
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias: BN follows) + BatchNorm + activation, "same" padding for odd kernels."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int | tuple = 3, stride: int = 1,
                 dilation: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU):
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        padding = tuple(dilation * (k - 1) // 2 for k in ks)
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, ks, stride=stride, padding=padding, dilation=dilation,
                      groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if act is not None:
            layers.append(act(inplace=True) if act in (nn.ReLU, nn.ReLU6) else act())
        super().__init__(*layers)


class ConvBNReLU(ConvBNAct):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int | tuple = 3, stride: int = 1,
                 dilation: int = 1, groups: int = 1):
        super().__init__(in_ch, out_ch, kernel_size, stride, dilation, groups, act=nn.ReLU)


class ConvBN(ConvBNAct):
    """Conv + BN without activation (linear bottlenecks, residual branches before the add)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int | tuple = 3, stride: int = 1,
                 dilation: int = 1, groups: int = 1):
        super().__init__(in_ch, out_ch, kernel_size, stride, dilation, groups, act=None)


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise 3x3 (optionally dilated) + pointwise 1x1, each with BN and ReLU.

    About 8-9x fewer MACs than a full 3x3 conv at the same width (Xception / DeepLabv3+).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1):
        super().__init__(
            ConvBNReLU(in_ch, in_ch, kernel_size, stride=stride, dilation=dilation, groups=in_ch),
            ConvBNReLU(in_ch, out_ch, 1),
        )


def resize_to(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize to ``size`` (H, W). align_corners=False maps to ONNX Resize half_pixel,
    which every runtime we target implements the same way."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def check_choice(model: str, option: str, value, choices) -> None:
    """Raise a ModelError naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        raise ModelError(f"{model} {option} must be one of {', '.join(map(str, choices))}, got '{value}'")


class Interpolate(nn.Module):
    """Parameter-free x``scale`` upsampling, ``mode`` "bilinear" (align_corners=False, ONNX
    Resize half_pixel) or "nearest" (ONNX Resize asymmetric/floor: each pixel repeated)."""

    def __init__(self, scale: int, mode: str = "bilinear"):
        super().__init__()
        if mode not in ("bilinear", "nearest"):
            raise ModelError(f"Interpolate mode must be bilinear or nearest, got '{mode}'")
        self.scale = int(scale)
        self.mode = mode

    def forward(self, x):
        return F.interpolate(x, scale_factor=float(self.scale), mode=self.mode,
                             align_corners=False if self.mode == "bilinear" else None)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, mode={self.mode}"


def bilinear_kernel(in_ch: int, out_ch: int, kernel_size: int) -> torch.Tensor:
    """Weights that make a ConvTranspose2d do bilinear upsampling (channel i -> channel i).

    Used to initialise learned upsampling (FCN): it starts as plain interpolation and
    training may refine it.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(in_ch, out_ch, kernel_size, kernel_size)
    for i in range(min(in_ch, out_ch)):
        weight[i, i] = filt
    return weight


def init_weights(module: nn.Module) -> None:
    """He init for convs (ReLU nets trained from scratch), BN to identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
