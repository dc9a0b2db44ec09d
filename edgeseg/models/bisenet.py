"""BiSeNet V2 (and a small BiSeNet V1).

BiSeNet V2: "BiSeNet V2: Bilateral Network with Guided Aggregation for Real-time Semantic
Segmentation", Changqian Yu, Changxin Gao, Jingbo Wang, Gang Yu, Chunhua Shen, Nong Sang,
2020. https://arxiv.org/abs/2004.02147

BiSeNet V1: "BiSeNet: Bilateral Segmentation Network for Real-time Semantic Segmentation",
Changqian Yu, Jingbo Wang, Chao Peng, Changxin Gao, Gang Yu, Nong Sang, 2018.
https://arxiv.org/abs/1808.00897

V2: a wide, shallow detail branch (1/8, 128 ch) and a narrow, deep semantic branch
(stem block, gather-and-expansion layers, context embedding; 1/32) merged by bilateral
guided aggregation, then a segmentation head. Auxiliary heads on the semantic stages
(booster training) run only in training mode; eval and export return one tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models.base import SegmentationModel
from edgeseg.models.layers import ConvBN, ConvBNReLU, init_weights, resize_to
from edgeseg.models.registry import register_model

PAPER_V2 = ("Yu et al., BiSeNet V2: Bilateral Network with Guided Aggregation for Real-time "
            "Semantic Segmentation, 2020, https://arxiv.org/abs/2004.02147")
PAPER_V1 = ("Yu et al., BiSeNet: Bilateral Segmentation Network for Real-time Semantic "
            "Segmentation, 2018, https://arxiv.org/abs/1808.00897")


# --- building blocks (V2) --------------------------------------------------------------

class DetailBranch(nn.Sequential):
    """Three stages of plain 3x3 convs (64, 64, 128 ch), each starting with stride 2: 1/8."""

    def __init__(self, in_ch: int = 3):
        super().__init__(
            ConvBNReLU(in_ch, 64, 3, stride=2), ConvBNReLU(64, 64),
            ConvBNReLU(64, 64, 3, stride=2), ConvBNReLU(64, 64), ConvBNReLU(64, 64),
            ConvBNReLU(64, 128, 3, stride=2), ConvBNReLU(128, 128), ConvBNReLU(128, 128),
        )


class StemBlock(nn.Module):
    """Fast 4x downsampling: stride-2 conv, then a conv path and a max-pool path concatenated."""

    def __init__(self, in_ch: int = 3, out_ch: int = 16):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch, 3, stride=2)
        self.left = nn.Sequential(ConvBNReLU(out_ch, out_ch // 2, 1),
                                  ConvBNReLU(out_ch // 2, out_ch, 3, stride=2))
        self.right = nn.MaxPool2d(3, stride=2, padding=1)
        self.fuse = ConvBNReLU(out_ch * 2, out_ch, 3)

    def forward(self, x):
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.right(x)], 1))


class GatherExpansion(nn.Module):
    """Gather-and-expansion layer: 3x3 conv gathers, a depthwise 3x3 expands by ``expand``
    (x6) in a high-dimensional space, a 1x1 projects back; residual add.

    Stride 2 adds a second depthwise conv (wider receptive field) and a depthwise +
    1x1 shortcut, as in the paper's Fig. 5(c).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, expand: int = 6):
        super().__init__()
        mid = in_ch * expand
        self.conv1 = ConvBNReLU(in_ch, in_ch, 3)
        if stride == 1:
            self.dw = ConvBN(in_ch, mid, 3, groups=in_ch)
            self.shortcut = None
        else:
            self.dw = nn.Sequential(ConvBN(in_ch, mid, 3, stride=2, groups=in_ch),
                                    ConvBN(mid, mid, 3, groups=mid))
            self.shortcut = nn.Sequential(ConvBN(in_ch, in_ch, 3, stride=2, groups=in_ch),
                                          ConvBN(in_ch, out_ch, 1))
        self.project = ConvBN(mid, out_ch, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.project(self.dw(self.conv1(x)))
        short = x if self.shortcut is None else self.shortcut(x)
        return self.act(out + short)


class ContextEmbedding(nn.Module):
    """Global average pool -> 1x1 conv + ReLU, broadcast-added to the map, then 3x3 conv.

    The paper puts a BN after the pooling; on a 1x1 map that fails for batch 1 in training,
    so the pooled vector goes straight into a biased 1x1 conv.
    """

    def __init__(self, channels: int = 128):
        super().__init__()
        self.gap_conv = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.ReLU(inplace=True))
        self.out = ConvBNReLU(channels, channels, 3)

    def forward(self, x):
        # mean over H, W exports as ReduceMean and works for any input size
        g = self.gap_conv(x.mean(dim=(2, 3), keepdim=True))
        return self.out(x + g)


class SemanticBranch(nn.Module):
    """Stem (1/4, 16 ch), GE stages 3-5 (1/8 32 ch, 1/16 64 ch, 1/32 128 ch), context embedding.

    Returns every stage's output: the auxiliary heads read them in training.
    """

    def __init__(self, in_ch: int = 3):
        super().__init__()
        self.stem = StemBlock(in_ch, 16)
        self.s3 = nn.Sequential(GatherExpansion(16, 32, 2), GatherExpansion(32, 32))
        self.s4 = nn.Sequential(GatherExpansion(32, 64, 2), GatherExpansion(64, 64))
        self.s5 = nn.Sequential(GatherExpansion(64, 128, 2), GatherExpansion(128, 128),
                                GatherExpansion(128, 128), GatherExpansion(128, 128))
        self.ce = ContextEmbedding(128)

    def forward(self, x):
        f2 = self.stem(x)
        f3 = self.s3(f2)
        f4 = self.s4(f3)
        f5 = self.s5(f4)
        return self.ce(f5), (f2, f3, f4, f5)


class BilateralGuidedAggregation(nn.Module):
    """Each branch gates the other at both resolutions: detail (1/8) x sigmoid(up(semantic)),
    down(detail) (1/32) x sigmoid(semantic); the 1/32 product is upsampled and summed."""

    def __init__(self, channels: int = 128):
        super().__init__()
        c = channels
        self.detail_keep = nn.Sequential(ConvBN(c, c, 3, groups=c), nn.Conv2d(c, c, 1, bias=False))
        self.detail_down = nn.Sequential(ConvBN(c, c, 3, stride=2),
                                         nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=False))
        self.semantic_keep = nn.Sequential(ConvBN(c, c, 3, groups=c), nn.Conv2d(c, c, 1, bias=False))
        self.semantic_up = ConvBN(c, c, 3)
        self.out = ConvBNReLU(c, c, 3)

    def forward(self, detail, semantic):
        size = detail.shape[-2:]
        left = self.detail_keep(detail) * torch.sigmoid(resize_to(self.semantic_up(semantic), size))
        right = self.detail_down(detail) * torch.sigmoid(self.semantic_keep(semantic))
        return self.out(left + resize_to(right, size))


class SegHead(nn.Module):
    """3x3 conv + BN + ReLU at ``mid`` ch, dropout, 1x1 classifier; resized to the input."""

    def __init__(self, in_ch: int, mid: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, mid, 3)
        self.drop = nn.Dropout(dropout)
        self.cls = nn.Conv2d(mid, num_classes, 1)

    def forward(self, x, size):
        return resize_to(self.cls(self.drop(self.conv(x))), size)


# --- model (V2) ------------------------------------------------------------------------

class BiSeNetV2(SegmentationModel):
    size_divisor = 32

    def __init__(self, num_classes: int, head_channels: int = 1024, aux: bool = True,
                 in_channels: int = 3):
        super().__init__(num_classes)
        self.detail = DetailBranch(in_channels)
        self.semantic = SemanticBranch(in_channels)
        self.bga = BilateralGuidedAggregation(128)
        self.head = SegHead(128, head_channels, num_classes)
        # booster heads on the stem, S3, S4 and S5 (before context embedding)
        self.aux_heads = nn.ModuleList(SegHead(c, 128, num_classes) for c in (16, 32, 64, 128)) if aux else None
        init_weights(self)

    def forward_features(self, x):
        size = x.shape[-2:]
        sem, feats = self.semantic(x)
        out = self.head(self.bga(self.detail(x), sem), size)
        if self.training and self.aux_heads is not None:
            return (out, *(h(f, size) for h, f in zip(self.aux_heads, feats)))
        return out


# --- building blocks (V1) --------------------------------------------------------------

class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs), the context path's backbone unit."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(ConvBNReLU(in_ch, out_ch, 3, stride=stride), ConvBN(out_ch, out_ch, 3))
        self.down = None if stride == 1 and in_ch == out_ch else ConvBN(in_ch, out_ch, 1, stride=stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + (x if self.down is None else self.down(x)))


class AttentionRefinement(nn.Module):
    """3x3 conv, then channel attention from global pooling (1x1 conv + sigmoid) re-weights it."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch, 3)
        self.att = nn.Sequential(nn.Conv2d(out_ch, out_ch, 1), nn.Sigmoid())

    def forward(self, x):
        x = self.conv(x)
        return x * self.att(x.mean(dim=(2, 3), keepdim=True))


class FeatureFusion(nn.Module):
    """Concatenate spatial and context features, 1x1 conv, then SE-style re-weighting + residual."""

    def __init__(self, in_ch: int, out_ch: int, reduction: int = 4):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch, 1)
        self.att = nn.Sequential(nn.Conv2d(out_ch, out_ch // reduction, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(out_ch // reduction, out_ch, 1), nn.Sigmoid())

    def forward(self, spatial, context):
        x = self.conv(torch.cat([spatial, context], 1))
        return x + x * self.att(x.mean(dim=(2, 3), keepdim=True))


# --- model (V1) ------------------------------------------------------------------------

class BiSeNetV1(SegmentationModel):
    """Spatial path (three stride-2 convs, 1/8) + a small ResNet-like context path
    (1/16 and 1/32 features refined by ARMs, plus a global context vector), fused by FFM.

    The paper uses ResNet-18/Xception39 backbones pretrained on ImageNet; none can be
    downloaded here, so the context path is a light ResNet-10-style net (one basic block
    per stage, widths ``widths``) trained from scratch.
    """

    size_divisor = 32

    def __init__(self, num_classes: int, widths=(32, 64, 128, 256), aux: bool = True,
                 in_channels: int = 3):
        super().__init__(num_classes)
        w1, w2, w3, w4 = widths
        self.spatial = nn.Sequential(ConvBNReLU(in_channels, 64, 3, stride=2), ConvBNReLU(64, 64, 3, stride=2),
                                     ConvBNReLU(64, 128, 3, stride=2))
        self.stem = nn.Sequential(ConvBNReLU(in_channels, w1, 3, stride=2), nn.MaxPool2d(3, 2, 1))  # 1/4
        self.layer1 = BasicBlock(w1, w1)
        self.layer2 = BasicBlock(w1, w2, 2)   # 1/8
        self.layer3 = BasicBlock(w2, w3, 2)   # 1/16
        self.layer4 = BasicBlock(w3, w4, 2)   # 1/32
        self.gc = ConvBNReLU(w4, 128, 1)      # global context vector, see forward
        self.arm16 = AttentionRefinement(w3, 128)
        self.arm32 = AttentionRefinement(w4, 128)
        self.refine16 = ConvBNReLU(128, 128, 3)
        self.refine32 = ConvBNReLU(128, 128, 3)
        self.ffm = FeatureFusion(256, 256)
        self.head = SegHead(256, 256, num_classes)
        self.aux_heads = nn.ModuleList([SegHead(128, 64, num_classes), SegHead(128, 64, num_classes)]) if aux else None
        init_weights(self)

    def forward_features(self, x):
        size = x.shape[-2:]
        sp = self.spatial(x)
        c8 = self.layer2(self.layer1(self.stem(x)))
        c16 = self.layer3(c8)
        c32 = self.layer4(c16)
        # global context: pooled, broadcast to 1/32 before the conv so BN sees a full map
        gc = self.gc(c32.mean(dim=(2, 3), keepdim=True).expand_as(c32))
        up32 = self.refine32(resize_to(self.arm32(c32) + gc, c16.shape[-2:]))
        up16 = self.refine16(resize_to(self.arm16(c16) + up32, sp.shape[-2:]))
        out = self.head(self.ffm(sp, up16), size)
        if self.training and self.aux_heads is not None:
            return out, self.aux_heads[0](up16, size), self.aux_heads[1](up32, size)
        return out


# --- builders --------------------------------------------------------------------------

@register_model("bisenetv2", paper=PAPER_V2,
                description="BiSeNet V2: detail + semantic branches, guided aggregation, 4 booster heads")
def bisenetv2(num_classes: int, **kw) -> BiSeNetV2:
    """BiSeNet V2 with the reference head width (1024)."""
    return BiSeNetV2(num_classes, **kw)


@register_model("bisenetv1", paper=PAPER_V1,
                description="BiSeNet V1: spatial path + light ResNet context path (ARM, FFM), from scratch")
def bisenetv1(num_classes: int, **kw) -> BiSeNetV1:
    """BiSeNet V1 with a small ResNet-10-style context path."""
    return BiSeNetV1(num_classes, **kw)
