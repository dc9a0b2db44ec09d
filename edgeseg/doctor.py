"""``edgeseg doctor``: what this machine has and what edgeseg can do with it.

One report, as a dict (``--json`` prints it as is): the versions of Python and of every
runtime and extra, the CPU and the ISA features that decide int8 / bf16 speed, the
devices each runtime sees (OpenVINO devices incl. an NPU, ONNX Runtime providers, an
Edge TPU through libedgetpu, CUDA for TensorRT), and for every target whether it can be
built and run here, with the precisions this CPU runs, and what to install where not.

Every probe is guarded: a runtime that is missing or fails to load is reported as such,
never raised, so doctor always finishes (exit 0) on a broken install -- that is when it
is needed.
"""

from __future__ import annotations

import platform
import sys

from edgeseg.formats.base import guarded

#: packages whose versions doctor shows besides the artifact tools (edgeseg.machine.TOOL_PACKAGES)
MORE_PACKAGES = ("opencv-python-headless", "albumentations", "torch-pruning", "pytest")

def versions() -> dict:
    """Python and every package of interest; None for those not installed."""
    from edgeseg.formats import get_unit, unit_names
    from edgeseg.machine import TOOL_PACKAGES, package_version

    dists = list(TOOL_PACKAGES) + [d for n in unit_names() for d in get_unit(n).distributions] + list(MORE_PACKAGES)
    return {"python": sys.version.split()[0], **{d: package_version(d) for d in dict.fromkeys(dists)}}


def _check(fn) -> tuple[bool, str]:
    """An ``(ok, why)`` check, with a check that raises reported as not ok and why."""
    result = guarded(fn)
    return (False, result["error"]) if isinstance(result, dict) else result


def _missing_for_build(profile) -> list[str]:
    """What to install before a build for ``profile`` can run here (its unit's build modules)."""
    from edgeseg.formats import get_unit

    unit = get_unit(profile.runtime)
    return [unit.install_hint()] if unit.missing(unit.build_modules) else []


def targets(probes: dict | None = None) -> list[dict]:
    """For every shipped target: can it be built here, can its runtime run here, which
    precisions this machine runs, and what to install where something is missing."""
    from edgeseg.targets import list_targets, load_target, precision_available, runtime_available

    rows = []
    for name in list_targets():
        p = load_target(name)
        missing = _missing_for_build(p)
        run_ok, why = _check(lambda: runtime_available(p))
        precisions, notes = [], []
        for prec in p.precisions:
            prec_ok, prec_why = _check(lambda: precision_available(p, prec)) if run_ok else (False, "")
            if prec_ok:
                precisions.append(prec)
            elif prec_why:
                notes.append(f"{prec}: {prec_why}")
        if run_ok and (probes or {}).get(p.runtime, {}).get("device_seen") is False:
            notes.append(f"{p.runtime} runs the model on this CPU; no {p.device} seen here")
        proxy = (p.extra or {}).get("parity_proxy") or (p.extra or {}).get("parity_proxy_device")
        if not run_ok and proxy:
            notes.append(f"build verifies parity on {proxy} instead")
        rows.append({"target": name, "format": p.format, "runtime": p.runtime, "device": p.device,
                     "build": not missing, "run": bool(run_ok), "why_not_run": None if run_ok else why,
                     "precisions_here": precisions, "install": missing, "notes": notes})
    return rows


def report() -> dict:
    from edgeseg.formats import get_unit, unit_names
    from edgeseg.machine import cpu_isa, cpu_model

    isa = cpu_isa()
    probes = {name: guarded(get_unit(name).probe) for name in unit_names()}
    # a runtime's own capability list (OpenVINO's BF16) is the authority for bf16 where it has one
    said = [p["bf16"] for p in probes.values() if isinstance(p.get("bf16"), bool)]
    bf16 = any(said) if said else isa["bf16"]
    return {
        "versions": versions(),
        "machine": {"cpu": cpu_model(), "arch": platform.machine(), "os": platform.platform(), **isa,
                    "bf16_runtime": bf16},
        "devices": probes,
        "targets": targets(probes),
    }


__all__ = ["report", "versions", "targets"]
