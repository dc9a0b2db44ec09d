"""A BiSeNet-style network: logits at 1/8 of the input, plus an auxiliary head, returned as a
tuple in training and eval alike; the class count is ``n_classes``."""

import torch
from torch import nn


def conv_bn(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class AuxNet(nn.Module):
    def __init__(self, n_classes, width=8):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, width, 2), conv_bn(width, width, 2))
        self.deep = nn.Sequential(conv_bn(width, width * 2, 2), conv_bn(width * 2, width * 2))
        self.head = nn.Conv2d(width * 2, n_classes, 1)
        self.aux = nn.Conv2d(width * 2, n_classes, 1)
        self.edge = nn.Conv2d(width * 2, 1, 1)  # a side output that is not class logits

    def forward(self, x):
        f = self.deep(self.stem(x))
        return self.head(f), self.aux(f), self.edge(f)


def build(n_classes, width=8):
    return AuxNet(n_classes, width)
