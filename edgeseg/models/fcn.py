"""Fully convolutional networks: FCN-32s, FCN-16s, FCN-8s.

Paper: "Fully Convolutional Networks for Semantic Segmentation", Jonathan Long, Evan
Shelhamer, Trevor Darrell, 2015. https://arxiv.org/abs/1411.4038

The paper converts VGG-16 (ImageNet-pretrained) into a fully convolutional net. Nothing
pretrained can be downloaded here and VGG-16 is too heavy to train on a CPU, so the
backbone is a small VGG-like net with the same shape: five conv stages (2-2-3-3-3 convs,
widths 32-64-128-256-256 by default, BN added since it trains from scratch), each ending
in a 2x2 max-pool, then fc6/fc7 as convolutions. FCN-32s upsamples the stride-32 scores
once; FCN-16s and FCN-8s first fuse scores predicted from pool4 and pool3 (skip
connections), each upsampling step a transposed conv initialised to bilinear
interpolation and learned. Convs are padded, so the score maps align with the input
without the paper's 100-pixel padding and crop; inputs must be multiples of 32.

Upsampling (``upsample=``): ``"deconv"`` (default: transposed convs initialised to
bilinear interpolation, all learned; the paper learns the 2x steps and keeps its final
one fixed to bilinear), ``"bilinear"`` or ``"nearest"`` (fixed, parameter-free resizes at
the same points, F.interpolate / ONNX Resize).
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.errors import ModelError
from edgeseg.models.base import SegmentationModel
from edgeseg.models.layers import ConvBNReLU, Interpolate, bilinear_kernel, check_choice, init_weights
from edgeseg.models.registry import register_model

PAPER = ("Long, Shelhamer, Darrell, Fully Convolutional Networks for Semantic Segmentation, 2015, "
         "https://arxiv.org/abs/1411.4038")
CONVS_PER_STAGE = (2, 2, 3, 3, 3)
UPSAMPLE_MODES = ("deconv", "bilinear", "nearest")


# --- building blocks -------------------------------------------------------------------

def vgg_stage(in_ch: int, out_ch: int, n: int) -> nn.Sequential:
    layers = [ConvBNReLU(in_ch if i == 0 else out_ch, out_ch, 3) for i in range(n)]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class Upsample(nn.ConvTranspose2d):
    """Learned x``factor`` upsampling, initialised to bilinear interpolation.

    Kernel 2f, stride f, padding f/2: output is exactly f times the input size.
    """

    def __init__(self, channels: int, factor: int):
        super().__init__(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
        with torch.no_grad():
            self.weight.copy_(bilinear_kernel(channels, channels, 2 * factor))


def make_upsample(channels: int, factor: int, mode: str) -> nn.Module:
    return Upsample(channels, factor) if mode == "deconv" else Interpolate(factor, mode)


# --- model -----------------------------------------------------------------------------

class FCN(SegmentationModel):
    size_divisor = 32

    def __init__(self, num_classes: int, variant: str = "8s", widths=(32, 64, 128, 256, 256),
                 fc_channels: int = 512, dropout: float = 0.5, upsample: str = "deconv",
                 in_channels: int = 3):
        super().__init__(num_classes)
        check_choice("FCN", "upsample", upsample, UPSAMPLE_MODES)
        if variant not in ("32s", "16s", "8s"):
            raise ModelError(f"FCN variant must be 32s, 16s or 8s, got '{variant}'")
        if len(widths) != 5:
            raise ModelError(f"FCN needs 5 stage widths, got {len(widths)}")
        self.variant = variant
        self.upsample = upsample
        chans = (in_channels, *widths)
        self.stages = nn.ModuleList(vgg_stage(chans[i], chans[i + 1], n) for i, n in enumerate(CONVS_PER_STAGE))
        # fc6 (7x7 in the paper) as a 3x3 conv and fc7 as a 1x1 conv: keeps the CPU cost low
        self.fc = nn.Sequential(ConvBNReLU(widths[4], fc_channels, 3), nn.Dropout2d(dropout),
                                ConvBNReLU(fc_channels, fc_channels, 1), nn.Dropout2d(dropout))
        self.score_fr = nn.Conv2d(fc_channels, num_classes, 1)
        if variant == "32s":
            self.up_final = make_upsample(num_classes, 32, upsample)
        else:
            self.score_pool4 = nn.Conv2d(widths[3], num_classes, 1)
            self.up2 = make_upsample(num_classes, 2, upsample)
            if variant == "16s":
                self.up_final = make_upsample(num_classes, 16, upsample)
            else:
                self.score_pool3 = nn.Conv2d(widths[2], num_classes, 1)
                self.up2_pool4 = make_upsample(num_classes, 2, upsample)
                self.up_final = make_upsample(num_classes, 8, upsample)
        init_weights(self)
        # the paper zero-initialises the skip score layers so training starts from the
        # coarser net's prediction and the skips add detail
        for name in ("score_pool4", "score_pool3"):
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name).weight)
                nn.init.zeros_(getattr(self, name).bias)

    def forward_features(self, x):
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        pool3, pool4 = feats[2], feats[3]
        score = self.score_fr(self.fc(x))
        if self.variant == "32s":
            return self.up_final(score)
        score = self.up2(score) + self.score_pool4(pool4)
        if self.variant == "16s":
            return self.up_final(score)
        score = self.up2_pool4(score) + self.score_pool3(pool3)
        return self.up_final(score)


# --- builders --------------------------------------------------------------------------

@register_model("fcn32s", paper=PAPER, description="FCN-32s on a small VGG-like backbone")
def fcn32s(num_classes: int, **kw) -> FCN:
    """FCN-32s: stride-32 scores, one x32 learned upsampling."""
    return FCN(num_classes, variant="32s", **kw)


@register_model("fcn16s", paper=PAPER, description="FCN-16s: FCN-32s plus a pool4 skip")
def fcn16s(num_classes: int, **kw) -> FCN:
    """FCN-16s: fuse pool4 scores, x16 upsampling."""
    return FCN(num_classes, variant="16s", **kw)


@register_model("fcn8s", paper=PAPER, description="FCN-8s: FCN-16s plus a pool3 skip")
def fcn8s(num_classes: int, **kw) -> FCN:
    """FCN-8s: fuse pool4 and pool3 scores, x8 upsampling."""
    return FCN(num_classes, variant="8s", **kw)
