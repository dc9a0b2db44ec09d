"""A torchvision-style network: a dict {"out", "aux"} at the input size, a U-shaped skip that
needs sizes divisible by 4, class count as ``num_classes``."""

import torch
import torch.nn.functional as F
from torch import nn


class DictNet(nn.Module):
    def __init__(self, num_classes=21):
        super().__init__()
        self.down1 = nn.Conv2d(3, 8, 3, 2, 1)
        self.down2 = nn.Conv2d(8, 8, 3, 2, 1)
        self.up = nn.ConvTranspose2d(8, 8, 2, 2)
        self.classifier = nn.Conv2d(16, num_classes, 1)
        self.aux_classifier = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        a = F.relu(self.down1(x))
        b = F.relu(self.down2(a))
        u = torch.cat([self.up(b), a], 1)  # breaks where the size is not divisible by 4
        out = F.interpolate(self.classifier(u), size=x.shape[-2:], mode="bilinear", align_corners=False)
        aux = F.interpolate(self.aux_classifier(b), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"out": out, "aux": aux}
