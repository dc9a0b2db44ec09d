"""Parameter and MAC counts. MACs come from PyTorch's own FLOP counter
(``torch.utils.flop_counter``), which counts every conv/matmul the forward runs;
one multiply-accumulate is two FLOPs."""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, size: tuple[int, int], channels: int = 3) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, channels, *size)
        with FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops() // 2
    finally:
        model.train(was_training)
