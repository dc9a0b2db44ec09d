"""DeepLabv3+ with a MobileNetV2 backbone.

DeepLabv3+: "Encoder-Decoder with Atrous Separable Convolution for Semantic Image
Segmentation", Liang-Chieh Chen, Yukun Zhu, George Papandreou, Florian Schroff,
Hartwig Adam, 2018. https://arxiv.org/abs/1802.02611

MobileNetV2: "MobileNetV2: Inverted Residuals and Linear Bottlenecks", Mark Sandler,
Andrew Howard, Menglong Zhu, Andrey Zhmoginov, Liang-Chieh Chen, 2018.
https://arxiv.org/abs/1801.04381

Backbone: MobileNetV2 without its last 1x1 (1280 ch) conv and classifier. Its stride is
32; for ``output_stride`` 16 (or 8) the last stride-2 stage (and the one before) keeps
stride 1 and dilates the following convs instead, so the receptive field is kept while
the features stay denser. The network's total stride is then the output stride, and
that is the model's ``size_divisor``.

Head: ASPP (1x1, three depthwise-separable atrous 3x3 at rates 6/12/18 for OS16, doubled
for OS8, image pooling) and the v3+ decoder (stride-4 low-level features reduced to 48
ch, two separable 3x3 convs, classifier, x4 upsampling).
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.errors import ModelError
from edgeseg.models.base import SegmentationModel
from edgeseg.models.layers import (ConvBN, ConvBNAct, ConvBNReLU, SeparableConvBNReLU, init_weights,
                                   make_divisible, resize_to)
from edgeseg.models.registry import register_model

PAPER = ("Chen et al., Encoder-Decoder with Atrous Separable Convolution for Semantic Image "
         "Segmentation (DeepLabv3+), 2018, https://arxiv.org/abs/1802.02611; backbone: Sandler et al., "
         "MobileNetV2: Inverted Residuals and Linear Bottlenecks, 2018, https://arxiv.org/abs/1801.04381")

# MobileNetV2 (paper Table 2): expansion t, channels c, repeats n, first stride s
MOBILENETV2_CFG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                   (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


# --- building blocks -------------------------------------------------------------------

class InvertedResidual(nn.Module):
    """1x1 expand (ReLU6), depthwise 3x3 (ReLU6), linear 1x1 project; residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int, dilation: int = 1):
        super().__init__()
        mid = in_ch * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(in_ch, mid, 1, act=nn.ReLU6))
        layers += [ConvBNAct(mid, mid, 3, stride=stride, dilation=dilation, groups=mid, act=nn.ReLU6),
                   ConvBN(mid, out_ch, 1)]  # linear bottleneck: no activation after projection
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2Encoder(nn.Module):
    """Returns (stride-4 low-level features, last features); ``out_channels`` gives both widths."""

    def __init__(self, width_mult: float = 1.0, output_stride: int = 16, in_channels: int = 3):
        super().__init__()
        first = make_divisible(32 * width_mult, 8)
        layers: list[nn.Module] = [ConvBNAct(in_channels, first, 3, stride=2, act=nn.ReLU6)]
        stride, dilation, in_ch = 2, 1, first
        self.low_level_index = None
        for t, c, n, s in MOBILENETV2_CFG:
            out_ch = make_divisible(c * width_mult, 8)
            if s > 1 and stride >= output_stride:
                # stop downsampling: keep stride 1, dilate from the next conv on
                block_stride, block_dilation, dilation = 1, dilation, dilation * s
            else:
                block_stride, block_dilation = s, dilation
                stride *= s
            for i in range(n):
                if i == 0:
                    layers.append(InvertedResidual(in_ch, out_ch, block_stride, t, block_dilation))
                else:
                    layers.append(InvertedResidual(in_ch, out_ch, 1, t, dilation))
                in_ch = out_ch
            if stride == 4 and self.low_level_index is None and c == 24:
                self.low_level_index = len(layers)  # end of the 24-ch stage: stride 4
                self.low_level_channels = out_ch
        self.features = nn.Sequential(*layers)
        self.out_channels = (self.low_level_channels, in_ch)
        self.output_stride = stride

    def forward(self, x):
        low = self.features[: self.low_level_index](x)
        return low, self.features[self.low_level_index:](low)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: parallel 1x1, separable atrous 3x3 and image pooling,
    concatenated and projected by a 1x1 conv."""

    def __init__(self, in_ch: int, out_ch: int = 256, rates=(6, 12, 18), dropout: float = 0.1):
        super().__init__()
        self.branches = nn.ModuleList([ConvBNReLU(in_ch, out_ch, 1)] +
                                      [SeparableConvBNReLU(in_ch, out_ch, 3, dilation=r) for r in rates])
        # image pooling: no BN on the 1x1 pooled map (BN fails on it for batch 1 in training)
        self.pool = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(ConvBNReLU(out_ch * (len(rates) + 2), out_ch, 1), nn.Dropout(dropout))

    def forward(self, x):
        outs = [b(x) for b in self.branches]
        # global average pool as a mean (ReduceMean in ONNX), resized back to the map
        pooled = self.pool(x.mean(dim=(2, 3), keepdim=True))
        outs.append(resize_to(pooled, x.shape[-2:]))
        return self.project(torch.cat(outs, 1))


class Decoder(nn.Module):
    """DeepLabv3+ decoder: upsample ASPP to stride 4, concat 48-ch low-level features,
    two separable 3x3 convs, 1x1 classifier."""

    def __init__(self, low_ch: int, aspp_ch: int, num_classes: int, low_out: int = 48):
        super().__init__()
        self.reduce = ConvBNReLU(low_ch, low_out, 1)
        self.fuse = nn.Sequential(SeparableConvBNReLU(aspp_ch + low_out, aspp_ch),
                                  SeparableConvBNReLU(aspp_ch, aspp_ch))
        self.cls = nn.Conv2d(aspp_ch, num_classes, 1)

    def forward(self, low, high):
        low = self.reduce(low)
        return self.cls(self.fuse(torch.cat([resize_to(high, low.shape[-2:]), low], 1)))


# --- model -----------------------------------------------------------------------------

class DeepLabV3Plus(SegmentationModel):
    def __init__(self, num_classes: int, width_mult: float = 1.0, output_stride: int = 16,
                 aspp_channels: int = 256, in_channels: int = 3):
        super().__init__(num_classes)
        if output_stride not in (8, 16):
            raise ModelError(f"DeepLabv3+ output_stride must be 8 or 16, got {output_stride}")
        if not width_mult > 0:
            raise ModelError(f"width_mult must be positive, got {width_mult}")
        self.encoder = MobileNetV2Encoder(width_mult, output_stride, in_channels)
        # total stride of the network = output stride: any multiple of it is a valid size
        self.size_divisor = output_stride
        self.output_stride = output_stride
        rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
        low_ch, high_ch = self.encoder.out_channels
        self.aspp = ASPP(high_ch, aspp_channels, rates)
        self.decoder = Decoder(low_ch, aspp_channels, num_classes)
        init_weights(self)

    def forward_features(self, x):
        low, high = self.encoder(x)
        return resize_to(self.decoder(low, self.aspp(high)), x.shape[-2:])


# --- builders --------------------------------------------------------------------------

@register_model("deeplabv3plus_mobilenetv2", paper=PAPER,
                description="DeepLabv3+ (ASPP + decoder) on MobileNetV2; width_mult, output_stride 8/16")
def deeplabv3plus_mobilenetv2(num_classes: int, width_mult: float = 1.0, output_stride: int = 16,
                              **kw) -> DeepLabV3Plus:
    """DeepLabv3+ with a MobileNetV2 backbone."""
    return DeepLabV3Plus(num_classes, width_mult=width_mult, output_stride=output_stride, **kw)
