"""Learning-rate schedules stepped once per iteration: linear warm-up, then poly or cosine."""

from __future__ import annotations

import math

from torch.optim.lr_scheduler import LambdaLR

from edgeseg.errors import ConfigError

SCHEDULES = ("poly", "cosine")


def lr_factor(step: int, total: int, warmup: int, kind: str, power: float = 0.9, floor: float = 0.0) -> float:
    if warmup > 0 and step < warmup:
        # Start at 1% of the base rate rather than zero so the first step moves.
        return 0.01 + 0.99 * step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "poly":
        factor = (1.0 - progress) ** power
    elif kind == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ConfigError(f"unknown schedule '{kind}': use one of {', '.join(SCHEDULES)}")
    return floor + (1.0 - floor) * factor


def build_scheduler(optimizer, kind: str, total_steps: int, warmup_steps: int = 0) -> LambdaLR:
    if kind not in SCHEDULES:
        raise ConfigError(f"unknown schedule '{kind}': use one of {', '.join(SCHEDULES)}")
    return LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, warmup_steps, kind, floor=0.01))
