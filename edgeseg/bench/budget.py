"""Budgets and the gate: p99 latency, peak memory, minimum mIoU.

Limits come from the options, else the artifact's target profile (``TargetProfile.budget``
{p99_ms, memory_mb}). The latency limit applies to the **end-to-end** p99 (decode + pre +
model + post: what a frame really costs on the device); memory to the peak resident set of
the plain runtime process (:mod:`edgeseg.bench.memory`: numpy and the runtime, as deployed). A degenerate-output flag (single class, empty mask) also fails the gate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from edgeseg.errors import ConfigError

EXIT_BUDGET = 3  # distinct from errors (2)


@dataclass
class Budget:
    p99_ms: float | None = None
    memory_mb: float | None = None
    min_miou: float | None = None
    sources: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _check_value(name: str, v, upper: float | None = None):
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {v!r}") from None
    if not math.isfinite(f) or f <= 0:
        raise ConfigError(f"{name} must be a positive number, got {v}: give a limit above 0")
    if upper is not None and f > upper:
        raise ConfigError(f"{name} must be at most {upper}, got {v} (mIoU is a fraction 0..1)")
    return f


def resolve_budget(target: str | None, *, p99_ms=None, memory_mb=None, min_miou=None) -> Budget:
    """The budget: options first, then the target profile's; values checked (> 0; mIoU <= 1)."""
    b = Budget(_check_value("--budget-p99-ms", p99_ms), _check_value("--budget-memory-mb", memory_mb),
               _check_value("--min-miou", min_miou, upper=1.0))
    for k in ("p99_ms", "memory_mb", "min_miou"):
        if getattr(b, k) is not None:
            b.sources[k] = "option"
    prof = {}
    if target:
        try:
            from edgeseg.targets import load_target

            prof = load_target(target).budget or {}
        except ConfigError:
            prof = {}
    for k in ("p99_ms", "memory_mb"):
        if getattr(b, k) is None and prof.get(k) is not None:
            setattr(b, k, _check_value(f"target '{target}' budget.{k}", prof[k]))
            b.sources[k] = f"target profile '{target}'"
    return b


def check_budget(result: dict, budget: Budget) -> dict:
    """``{passed, limits, violations: [{metric, limit, value, over_by}], skipped}`` for a bench result."""
    violations, skipped = [], []

    def over(metric, limit, value, higher_is_worse=True, unit=""):
        if limit is None:
            return
        if value is None:
            skipped.append(f"{metric}: not measured")
            return
        bad = value > limit if higher_is_worse else value < limit
        if bad:
            violations.append({"metric": metric, "limit": limit, "value": value, "unit": unit,
                               "over_by": (value - limit) if higher_is_worse else (limit - value),
                               "over_by_pct": 100.0 * abs(value - limit) / limit if limit else None})

    over("latency p99 end-to-end", budget.p99_ms, (result.get("end_to_end_ms") or {}).get("p99"), unit="ms")
    over("peak memory", budget.memory_mb, result.get("peak_memory_mb"), unit="MB")
    if budget.min_miou is not None:
        over("mIoU", budget.min_miou, result.get("miou"), higher_is_worse=False)
    for flag in result.get("flags") or []:
        violations.append({"metric": "output check", "limit": "no degenerate output", "value": flag,
                           "unit": "", "over_by": None, "over_by_pct": None})
    return {"passed": not violations, "limits": budget.to_dict(), "violations": violations, "skipped": skipped}


__all__ = ["Budget", "resolve_budget", "check_budget", "EXIT_BUDGET"]
