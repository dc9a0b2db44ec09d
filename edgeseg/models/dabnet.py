"""DABNet: a segmentation network designed to be trained from scratch.

Paper: "DABNet: Depth-wise Asymmetric Bottleneck for Real-time Semantic Segmentation",
Gen Li, Inyoung Yun, Jonghyun Kim, Joongkyu Kim, BMVC 2019.
https://arxiv.org/abs/1907.11357

Why this one for the zoo: the paper trains on CamVid with no ImageNet pretraining and
reports 66.4 test mIoU at 360x480 with 0.76 M parameters, and its blocks (3x3 convs,
depthwise 3x1/1x3 convs, PReLU, one 1x1 classifier and one bilinear resize) are ops that
every edgeseg target runs, int8 included. CGNet, FBSNet and LMFFNet report similar or
higher scores but add attention and channel shuffles that cost more per MAC on a CPU.

Layout (paper, Fig. 3): three 3x3 convs (/2, 32 ch); concat with the input pooled to
/2; a downsampling block to 64 ch (/4); 3 DAB modules (dilation 2); concat with the
block's input and the input pooled to /4; a downsampling block to 128 ch (/8); 6 DAB
modules (dilations 4, 4, 8, 8, 16, 16); concat with the block's input and the input
pooled to /8; a 1x1 classifier at /8 and a bilinear resize to the input.

A DAB module: BN-PReLU, 3x3 conv to half the channels, then two depthwise branches of
3x1 + 1x3 convs (one plain, one dilated) that are summed, BN-PReLU, a 1x1 conv back to
the full width and a residual add.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models.base import SegmentationModel
from edgeseg.models.layers import init_weights
from edgeseg.models.registry import register_model

PAPER = ("Li et al., DABNet: Depth-wise Asymmetric Bottleneck for Real-time Semantic "
         "Segmentation, BMVC 2019, https://arxiv.org/abs/1907.11357")


class BNPReLU(nn.Sequential):
    def __init__(self, ch: int):
        super().__init__(nn.BatchNorm2d(ch), nn.PReLU(ch))


def _conv(in_ch, out_ch, kernel, stride=1, dilation=1, groups=1, act=True) -> nn.Module:
    """Conv (no bias), optionally followed by BN-PReLU; "same" padding per axis."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    # dilate only along an axis longer than 1: a dilation on a 1-wide axis changes nothing, but
    # oneDNN's bf16 channels-last depthwise backward gave non-finite weight gradients with it
    dil = (dilation if kh > 1 else 1, dilation if kw > 1 else 1)
    pad = (dil[0] * (kh - 1) // 2, dil[1] * (kw - 1) // 2)
    conv = nn.Conv2d(in_ch, out_ch, (kh, kw), stride=stride, padding=pad, dilation=dil,
                     groups=groups, bias=False)
    return nn.Sequential(conv, BNPReLU(out_ch)) if act else conv


class DABModule(nn.Module):
    """Depth-wise asymmetric bottleneck with a plain and a dilated branch."""

    def __init__(self, ch: int, dilation: int):
        super().__init__()
        half = ch // 2
        self.pre = BNPReLU(ch)
        self.reduce = _conv(ch, half, 3)
        self.local = nn.Sequential(_conv(half, half, (3, 1), groups=half),
                                   _conv(half, half, (1, 3), groups=half))
        self.context = nn.Sequential(_conv(half, half, (3, 1), dilation=dilation, groups=half),
                                     _conv(half, half, (1, 3), dilation=dilation, groups=half))
        self.post = BNPReLU(half)
        self.expand = _conv(half, ch, 1, act=False)

    def forward(self, x):
        y = self.reduce(self.pre(x))
        y = self.post(self.local(y) + self.context(y))
        return self.expand(y) + x


class Downsample(nn.Module):
    """3x3 stride-2 conv; where the width grows, concatenated with a 2x2 max-pool (ENet-style)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.pooled = in_ch < out_ch
        self.conv = nn.Conv2d(in_ch, out_ch - in_ch if self.pooled else out_ch, 3, stride=2, padding=1,
                              bias=False)
        self.pool = nn.MaxPool2d(2) if self.pooled else None
        self.act = BNPReLU(out_ch)

    def forward(self, x):
        y = self.conv(x)
        if self.pool is not None:
            y = torch.cat([y, self.pool(x)], 1)
        return self.act(y)


class DABNet(SegmentationModel):
    size_divisor = 8

    def __init__(self, num_classes: int, in_channels: int = 3, block1: int = 3, block2: int = 6,
                 dropout: float = 0.0):
        super().__init__(num_classes)
        self.stem = nn.Sequential(_conv(in_channels, 32, 3, stride=2), _conv(32, 32, 3), _conv(32, 32, 3))
        self.stem_act = BNPReLU(32 + in_channels)
        self.down1 = Downsample(32 + in_channels, 64)
        self.stage1 = nn.Sequential(*[DABModule(64, 2) for _ in range(block1)])
        self.stage1_act = BNPReLU(128 + in_channels)
        self.down2 = Downsample(128 + in_channels, 128)
        dilations = [4, 4, 8, 8, 16, 16][:block2] + [16] * max(0, block2 - 6)
        self.stage2 = nn.Sequential(*[DABModule(128, d) for d in dilations])
        self.stage2_act = BNPReLU(256 + in_channels)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(256 + in_channels, num_classes, 1)
        init_weights(self)

    def forward_features(self, x):
        size = x.shape[-2:]
        # the input pooled to /2, /4 and /8 re-enters at each scale
        x2 = F.avg_pool2d(x, 2)
        x4 = F.avg_pool2d(x2, 2)
        x8 = F.avg_pool2d(x4, 2)
        y = self.stem_act(torch.cat([self.stem(x), x2], 1))
        d1 = self.down1(y)
        y = self.stage1_act(torch.cat([self.stage1(d1), d1, x4], 1))
        d2 = self.down2(y)
        y = self.stage2_act(torch.cat([self.stage2(d2), d2, x8], 1))
        out = self.classifier(self.dropout(y))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)


@register_model("dabnet", paper=PAPER,
                description="DABNet: depth-wise asymmetric bottlenecks, 0.75 M params, built to train from scratch")
def dabnet(num_classes: int, **kw) -> DABNet:
    """DABNet as in the paper (3 + 6 DAB modules)."""
    return DABNet(num_classes, **kw)
