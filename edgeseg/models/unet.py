"""U-Net.

Paper: "U-Net: Convolutional Networks for Biomedical Image Segmentation", Olaf
Ronneberger, Philipp Fischer, Thomas Brox, 2015. https://arxiv.org/abs/1505.04597

Contracting path of ``depth`` levels (two 3x3 convs, then 2x2 max-pool, channels doubling
from ``base_channels``), a bottleneck, and an expanding path (2x upsampling halving the
channels, concatenation with the same level's encoder features, two 3x3 convs).
``base_channels`` defaults to 32 (the paper: 64) to stay light on a CPU; BN is added
after each conv since the models train from scratch.

``unet``: padded convs, output = input size; the size must be a multiple of 2**depth.

``unet_valid``: the paper's unpadded (valid) convs with copy-and-crop skips. Each 3x3
valid conv loses 2 pixels, so for depth 4 the output is 184 pixels smaller than the
input (572 -> 388 in the paper), and the input must be 12 mod 16 so that every pooled map
has an even size. To keep the contract (output = input size) the model mirror-pads its
input, the paper's overlap-tile strategy for the border: an input of size s (a multiple
of 16) is reflect-padded by 94 on each side to s + 188 (12 mod 16), which gives an output
of s + 4, center-cropped by 2 to s. Reflect padding needs the pad to be smaller than the
input, so s >= 96 (``min_size``). See ``UNet.valid_geometry``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import ModelError
from edgeseg.models.base import SegmentationModel
from edgeseg.models.layers import check_choice, init_weights
from edgeseg.models.registry import register_model

UPSAMPLE_MODES = ("deconv", "bilinear", "nearest")
PAPER = ("Ronneberger, Fischer, Brox, U-Net: Convolutional Networks for Biomedical Image "
         "Segmentation, 2015, https://arxiv.org/abs/1505.04597")


# --- building blocks -------------------------------------------------------------------

class DoubleConv(nn.Sequential):
    """Two 3x3 conv + BN + ReLU; ``padding=0`` gives the paper's valid convs (-4 px)."""

    def __init__(self, in_ch: int, out_ch: int, padding: int = 1):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=padding, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=padding, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """x2 upsampling that halves the channels: a 2x2 stride-2 transposed conv (paper's
    "up-convolution"), or a bilinear or nearest resize + 1x1 conv (no checkerboard
    artefacts)."""

    def __init__(self, in_ch: int, out_ch: int, mode: str = "deconv"):
        super().__init__()
        self.mode = mode
        if mode == "deconv":
            self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        else:
            self.up = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x):
        if self.mode == "deconv":
            return self.up(x)
        return self.up(F.interpolate(x, scale_factor=2.0, mode=self.mode,
                                     align_corners=False if self.mode == "bilinear" else None))


# --- model -----------------------------------------------------------------------------

class UNet(SegmentationModel):
    def __init__(self, num_classes: int, base_channels: int = 32, depth: int = 4,
                 upsample: str = "deconv", valid: bool = False, in_channels: int = 3):
        super().__init__(num_classes)
        check_choice("UNet", "upsample", upsample, UPSAMPLE_MODES)
        if not 1 <= depth <= 6:
            raise ModelError(f"UNet depth must be between 1 and 6, got {depth}")
        self.depth = depth
        self.upsample = upsample
        self.valid = valid
        self.size_divisor = 2 ** depth
        pad = 0 if valid else 1
        chans = [base_channels * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList(DoubleConv(in_channels if i == 0 else chans[i - 1], chans[i], pad)
                                  for i in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(chans[depth - 1], chans[depth], pad)
        self.ups = nn.ModuleList(Up(chans[i + 1], chans[i], upsample) for i in reversed(range(depth)))
        self.up_convs = nn.ModuleList(DoubleConv(chans[i] * 2, chans[i], pad) for i in reversed(range(depth)))
        self.cls = nn.Conv2d(chans[0], num_classes, 1)
        if valid:
            self.pad, self.crop, self.skip_crops, self.min_size = self.valid_geometry(depth, self.size_divisor)
        init_weights(self)

    @staticmethod
    def valid_geometry(depth: int, divisor: int):
        """Sizes for valid convs: (pad per side, output crop per side, skip crops, min size).

        Level l's encoder map is ``skip[l]`` pixels larger than the upsampled decoder map
        it is concatenated with: skip[depth-1] = 8 and skip[l] = 2 * skip[l+1] + 16
        (two more valid convs at each level below, measured at the coarser scale).
        The whole net loses 4 * (2**(depth+1) - 1) + 4 * (2**depth - 1) pixels (184 for
        depth 4); a valid network input is ``4 * (2**depth - 1)`` mod ``2**depth``.
        """
        skips = [0] * depth
        skips[depth - 1] = 8
        for lvl in range(depth - 2, -1, -1):
            skips[lvl] = 2 * skips[lvl + 1] + 16
        loss = 4 * (2 ** (depth + 1) - 1) + 4 * (2 ** depth - 1)
        residue = 4 * (2 ** depth - 1) % divisor          # 12 for depth 4
        # input s is a multiple of divisor; s + total pad must be `residue` mod divisor and
        # at least `loss` (so the output is not smaller than s)
        total = loss + (residue - loss) % divisor
        # the smallest map (bottleneck output) must be at least 1 px: guaranteed by total >= loss
        pad = total // 2 if total % 2 == 0 else None
        if pad is None:  # pragma: no cover - loss and residue are even for every depth
            raise ModelError("odd total padding")
        crop = (total - loss) // 2
        # reflect padding needs pad < input size; round up to the divisor
        min_size = -(-(pad + 1) // divisor) * divisor
        return pad, crop, [s // 2 for s in skips], min_size

    def forward_features(self, x):
        if self.valid:
            # overlap-tile: mirror the border so the valid convs see context everywhere
            x = F.pad(x, (self.pad,) * 4, mode="reflect")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for i, (up, conv) in enumerate(zip(self.ups, self.up_convs)):
            lvl = self.depth - 1 - i
            skip = skips[lvl]
            if self.valid:
                c = self.skip_crops[lvl]
                skip = skip[:, :, c:-c, c:-c]  # copy and crop: constant margins, export-friendly
            x = conv(torch.cat([skip, up(x)], 1))
        x = self.cls(x)
        if self.valid and self.crop:
            x = x[:, :, self.crop:-self.crop, self.crop:-self.crop]
        return x


# --- builders --------------------------------------------------------------------------

@register_model("unet", paper=PAPER, description="U-Net with padded convs (base 32 ch, depth 4)")
def unet(num_classes: int, base_channels: int = 32, depth: int = 4, upsample: str = "deconv", **kw) -> UNet:
    """U-Net, padded convolutions."""
    return UNet(num_classes, base_channels=base_channels, depth=depth, upsample=upsample, **kw)


@register_model("unet_valid", paper=PAPER,
                description="U-Net as in the paper: valid convs, copy-and-crop, mirrored border (overlap-tile)")
def unet_valid(num_classes: int, base_channels: int = 32, depth: int = 4, upsample: str = "deconv",
               **kw) -> UNet:
    """U-Net with valid convolutions and internal mirror padding."""
    return UNet(num_classes, base_channels=base_channels, depth=depth, upsample=upsample, valid=True, **kw)
