"""A network whose first layer writes one huge channel beside small ones: 8-bit activations of
that tensor keep the huge one and round the small ones (which carry the classes) to zero, so
its int8 build fails parity until the layer reading it stays in float. Fixed weights, no
training: the logits are a linear function of the pixels."""

import torch
from torch import nn


class Outlier(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.head = nn.Conv2d(4, num_classes, 1)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.stem.weight.zero_()
            self.stem.bias.zero_()
            for c in range(3):
                self.stem.weight[c, c] = 1.0
            self.stem.bias[3] = 4000.0  # the outlier channel: constant, ignored by the head
            self.head.weight.copy_(torch.randn(num_classes, 4, 1, 1, generator=g))
            self.head.weight[:, 3] = 0.0
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.stem(x))
