"""An OpenCV-era network: B,G,R pixels in 0..255 with its own mean subtracted inside, the class
count as the first positional argument."""

import torch
from torch import nn

BGR_MEAN = (104.0, 117.0, 123.0)


class Bgr255Net(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.register_buffer("mean", torch.tensor(BGR_MEAN).view(1, 3, 1, 1))
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, classes, 3, 1, 1))

    def forward(self, x):
        return self.body((x - self.mean) / 58.0)  # logits at 1/2 resolution


def make(classes):
    return Bgr255Net(classes)
