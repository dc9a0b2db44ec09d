"""The contract every segmentation model follows.

A model maps a normalised NCHW float image to NCHW logits at the input resolution.
In training mode a model with auxiliary heads returns a tuple ``(main, aux1, ...)``,
every element at input resolution; in eval mode it always returns one tensor.
The base class owns the input-size check so every model reports the same clear error.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.errors import InputSizeError
from edgeseg.sizes import nearest_valid_size, valid_size


class SegmentationModel(nn.Module):
    #: inputs must have height and width divisible by this (the network's total stride)
    size_divisor: int = 32
    #: smallest height/width accepted (0 = size_divisor)
    min_size: int = 0

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = int(num_classes)

    # Subclasses implement this; it may return a tuple in training mode.
    def forward_features(self, x: torch.Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor):
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            self.check_input_size(int(x.shape[-2]), int(x.shape[-1]))
        return self.forward_features(x)

    def valid_size(self, size: int) -> int:
        """The nearest valid size at or above ``size`` for one dimension."""
        return valid_size(size, self.size_divisor, self.min_size)

    def check_input_size(self, h: int, w: int) -> None:
        d = self.size_divisor
        lo = self.min_size or d
        if h % d == 0 and w % d == 0 and h >= lo and w >= lo:
            return
        nearest = [nearest_valid_size(s, d, self.min_size) for s in (h, w)]
        name = getattr(self, "display_name", type(self).__name__)  # a model of your own: its own name
        raise InputSizeError(
            f"{name} needs height and width divisible by {d} (at least {lo}); "
            f"got {h}x{w}: pad or resize to {nearest[0]}x{nearest[1]} "
            f"(or up to {self.valid_size(h)}x{self.valid_size(w)})"
        )

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class map (N, H, W) for a normalised batch; sets eval mode for the call."""
        was_training = self.training
        self.eval()
        try:
            return self(x).argmax(1)
        finally:
            self.train(was_training)
