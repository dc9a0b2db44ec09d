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


class PyramidPool(nn.Module):
    """Pyramid pooling to 6x6 (as PSPNet and Fast-SCNN do): torch.onnx cannot export it where the
    input does not divide by 6."""

    def __init__(self, num_classes):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.conv = nn.Conv2d(3, num_classes, 1)

    def forward(self, x):
        return self.conv(self.pool(x))
