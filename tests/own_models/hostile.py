"""Factories that misbehave, for the one-line errors."""

from torch import nn


def raises(num_classes):
    raise RuntimeError("weights file not found: /nonexistent/backbone.pth")


def not_a_module(num_classes):
    return {"num_classes": num_classes}


class FiveD(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 1)

    def forward(self, x):
        return self.conv(x).unsqueeze(2)


class WrongClasses(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1)

    def forward(self, x):
        return self.conv(x)
