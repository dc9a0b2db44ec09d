"""ENet.

Paper: "ENet: A Deep Neural Network Architecture for Real-Time Semantic Segmentation",
Adam Paszke, Abhishek Chaurasia, Sangpil Kim, Eugenio Culurciello, 2016.
https://arxiv.org/abs/1606.02147

Layout (paper, Table 1): initial block (/2), stage 1 (downsampling bottleneck to 64 ch,
/4, then 4 regular), stages 2 and 3 (128 ch, /8; regular, dilated 2/4/8/16 and
asymmetric 5x1+1x5 bottlenecks), stages 4 and 5 (upsampling bottlenecks back to /2 with
64 and 16 ch), then a full-resolution transposed conv to the classes. PReLU everywhere,
spatial dropout (p=0.01 in stage 1, 0.1 after).

Upsampling: the paper's decoder un-pools with the max-pool indices kept by the
downsampling bottlenecks (``upsample="unpool"``). MaxUnpool makes OpenVINO about 4x
slower than ONNX Runtime on ENet, so the default (``"bilinear"``) upsamples the main
branch bilinearly instead; ``"nearest"`` repeats pixels (the cheapest resize, supported
by every runtime); ``"deconv"`` uses a stride-2 transposed conv there. With "bilinear" and
"nearest" the classifier is a 1x1 conv at 1/2 resolution followed by the same resize; with
"deconv" and "unpool" it is the paper's full-resolution transposed conv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models.base import SegmentationModel
from edgeseg.models.layers import check_choice
from edgeseg.models.registry import register_model

PAPER = ("Paszke et al., ENet: A Deep Neural Network Architecture for Real-Time Semantic "
         "Segmentation, 2016, https://arxiv.org/abs/1606.02147")
UPSAMPLE_MODES = ("bilinear", "nearest", "deconv", "unpool")
RESIZE_MODES = ("bilinear", "nearest")  # parameter-free upsampling, classifier at 1/2 resolution


# --- building blocks -------------------------------------------------------------------

def _conv_bn_prelu(in_ch, out_ch, kernel_size, stride=1, padding=0, dilation=1):
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding,
                  dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.PReLU(out_ch),
    )


class InitialBlock(nn.Module):
    """3x3 stride-2 conv to 13 ch concatenated with a 2x2 max-pool of the RGB input (16 ch)."""

    def __init__(self, in_ch: int = 3, out_ch: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch - in_ch, 3, stride=2, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.PReLU(out_ch)

    def forward(self, x):
        return self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], 1)))


class RegularBottleneck(nn.Module):
    """Residual bottleneck: 1x1 reduce (ratio 4), a main conv, 1x1 expand, spatial dropout.

    ``kind`` picks the main conv: "regular" 3x3, "dilated" 3x3 with ``dilation``, or
    "asymmetric" 5x1 then 1x5 (a 5x5 receptive field for the cost of two thin convs).
    """

    def __init__(self, channels: int, kind: str = "regular", dilation: int = 1,
                 dropout: float = 0.1, ratio: int = 4):
        super().__init__()
        mid = channels // ratio
        if kind == "asymmetric":
            main = nn.Sequential(
                nn.Conv2d(mid, mid, (5, 1), padding=(2, 0), bias=False),
                _conv_bn_prelu(mid, mid, (1, 5), padding=(0, 2)),
            )
        else:
            d = dilation if kind == "dilated" else 1
            main = _conv_bn_prelu(mid, mid, 3, padding=d, dilation=d)
        self.branch = nn.Sequential(
            _conv_bn_prelu(channels, mid, 1),
            main,
            nn.Conv2d(mid, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.Dropout2d(dropout),  # spatial dropout: drops whole channels
        )
        self.act = nn.PReLU(channels)

    def forward(self, x):
        return self.act(x + self.branch(x))


class DownsamplingBottleneck(nn.Module):
    """Halves resolution. Main branch: 2x2 max-pool, then zero channels padded on to reach
    ``out_ch``; side branch: 2x2 stride-2 conv replaces the 1x1 reduce. With
    ``return_indices`` the pool indices are returned for the unpooling decoder."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float = 0.1, ratio: int = 4,
                 return_indices: bool = False):
        super().__init__()
        mid = in_ch // ratio
        self.extra = out_ch - in_ch
        self.return_indices = return_indices
        self.pool = nn.MaxPool2d(2, return_indices=return_indices)
        self.branch = nn.Sequential(
            _conv_bn_prelu(in_ch, mid, 2, stride=2),
            _conv_bn_prelu(mid, mid, 3, padding=1),
            nn.Conv2d(mid, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.Dropout2d(dropout),
        )
        self.act = nn.PReLU(out_ch)

    def forward(self, x):
        if self.return_indices:
            main, indices = self.pool(x)
        else:
            main, indices = self.pool(x), None
        # zero-pad channels (a Pad op in ONNX) instead of a 1x1 conv: no parameters
        main = F.pad(main, (0, 0, 0, 0, 0, self.extra))
        out = self.act(main + self.branch(x))
        return out, indices


class ScatterMaxUnpool2d(nn.MaxUnpool2d):
    """``nn.MaxUnpool2d(2)`` written as a scatter into zeros.

    Same result as the built-in; the TorchScript ONNX exporter has no symbolic for
    ``aten::max_unpool2d``, while scatter exports as ScatterElements, so the paper's
    decoder still exports (it is the slow path on OpenVINO either way).
    """

    def __init__(self):
        super().__init__(kernel_size=2, stride=2)

    def forward(self, x, indices, output_size):
        n, c, h, w = x.shape
        out = x.new_zeros(n, c, output_size[0] * output_size[1])
        out = out.scatter(2, indices.flatten(2), x.flatten(2))
        return out.view(n, c, output_size[0], output_size[1])


def _resize2x(x, mode: str):
    return F.interpolate(x, scale_factor=2.0, mode=mode, align_corners=False if mode == "bilinear" else None)


class UpsamplingBottleneck(nn.Module):
    """Doubles resolution. Main branch: 1x1 conv + BN to ``out_ch`` then un-pool / bilinear /
    nearest / transposed conv; side branch: 1x1 reduce, 3x3 stride-2 transposed conv, 1x1 expand."""

    def __init__(self, in_ch: int, out_ch: int, mode: str = "bilinear", dropout: float = 0.1,
                 ratio: int = 4):
        super().__init__()
        mid = in_ch // ratio
        self.mode = mode
        self.main_conv = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        if mode == "unpool":
            self.unpool = ScatterMaxUnpool2d()
        elif mode == "deconv":
            self.up = nn.ConvTranspose2d(out_ch, out_ch, 2, stride=2, groups=out_ch, bias=False)
        self.branch = nn.Sequential(
            _conv_bn_prelu(in_ch, mid, 1),
            nn.ConvTranspose2d(mid, mid, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.PReLU(mid),
            nn.Conv2d(mid, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.Dropout2d(dropout),
        )
        self.act = nn.PReLU(out_ch)

    def forward(self, x, indices=None):
        main = self.main_conv(x)
        size = (x.shape[-2] * 2, x.shape[-1] * 2)
        if self.mode == "unpool":
            main = self.unpool(main, indices, size)
        elif self.mode == "deconv":
            main = self.up(main)
        else:
            main = _resize2x(main, self.mode)
        return self.act(main + self.branch(x))


# --- model -----------------------------------------------------------------------------

class ENet(SegmentationModel):
    size_divisor = 8

    def __init__(self, num_classes: int, upsample: str = "bilinear", in_channels: int = 3):
        super().__init__(num_classes)
        check_choice("ENet", "upsample", upsample, UPSAMPLE_MODES)
        self.upsample = upsample
        unpool = upsample == "unpool"
        self.initial = InitialBlock(in_channels, 16)
        # stage 1
        self.down1 = DownsamplingBottleneck(16, 64, dropout=0.01, return_indices=unpool)
        self.stage1 = nn.Sequential(*[RegularBottleneck(64, dropout=0.01) for _ in range(4)])
        # stages 2 and 3 share one pattern; stage 2 starts with a downsampling bottleneck
        self.down2 = DownsamplingBottleneck(64, 128, dropout=0.1, return_indices=unpool)
        self.stage2 = self._middle_stage()
        self.stage3 = self._middle_stage()
        # stages 4 and 5: decoder
        self.up4 = UpsamplingBottleneck(128, 64, upsample)
        self.stage4 = nn.Sequential(RegularBottleneck(64), RegularBottleneck(64))
        self.up5 = UpsamplingBottleneck(64, 16, upsample)
        self.stage5 = RegularBottleneck(16)
        if upsample in RESIZE_MODES:
            # classify at /2 and resize: cheaper than a full-resolution transposed conv
            self.classifier = nn.Conv2d(16, num_classes, 1)
        else:
            self.classifier = nn.ConvTranspose2d(16, num_classes, 3, stride=2, padding=1, output_padding=1)

    @staticmethod
    def _middle_stage() -> nn.Sequential:
        blocks = []
        for kind, d in (("regular", 1), ("dilated", 2), ("asymmetric", 1), ("dilated", 4),
                        ("regular", 1), ("dilated", 8), ("asymmetric", 1), ("dilated", 16)):
            blocks.append(RegularBottleneck(128, kind=kind, dilation=d, dropout=0.1))
        return nn.Sequential(*blocks)

    def forward_features(self, x):
        out = self.initial(x)
        out, idx1 = self.down1(out)
        out = self.stage1(out)
        out, idx2 = self.down2(out)
        out = self.stage3(self.stage2(out))
        out = self.stage4(self.up4(out, idx2))
        out = self.stage5(self.up5(out, idx1))
        out = self.classifier(out)
        if self.upsample in RESIZE_MODES:
            out = _resize2x(out, self.upsample)
        return out


# --- builders --------------------------------------------------------------------------

@register_model("enet", paper=PAPER,
                description="ENet with an export-friendly decoder (bilinear upsampling, no MaxUnpool)")
def enet(num_classes: int, upsample: str = "bilinear", **kw) -> ENet:
    """ENet, default export-friendly upsampling."""
    return ENet(num_classes, upsample=upsample, **kw)


@register_model("enet_unpool", paper=PAPER,
                description="ENet as in the paper: max-unpooling decoder with pool indices")
def enet_unpool(num_classes: int, **kw) -> ENet:
    """ENet with the paper's MaxUnpool decoder."""
    return ENet(num_classes, upsample="unpool", **kw)
