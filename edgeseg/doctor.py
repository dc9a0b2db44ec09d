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


#: a precision measured this much slower than fp32 (or more) is reported as slower, not as noise
SLOWER = 1.05


def _probe_key(profile, precision: str) -> dict:
    import os

    from edgeseg.formats import get_unit
    from edgeseg.machine import cpu_isa, cpu_model, package_version

    unit = get_unit(profile.runtime)
    return {"runtime": profile.runtime, "device": profile.device, "precision": precision, "cpu": cpu_model(),
            "flags": cpu_isa()["flags"], "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "versions": {d: package_version(d) for d in unit.distributions}, "schema": 1}


def precision_speed(profile, precision: str) -> dict | None:
    """The runtime's measured probe of ``precision`` against fp32 here, or None where there is
    nothing to compare; cached under ``$EDGESEG_CACHE/probes`` per CPU, cores and runtime version."""
    import hashlib
    import json

    from edgeseg.files import atomic_write_text, cache_dir
    from edgeseg.formats import get_unit

    key = _probe_key(profile, precision)
    path = cache_dir() / "probes" / (hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20] + ".json")
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            return cached["probe"]
    except (OSError, ValueError, AttributeError):
        pass
    probe = get_unit(profile.runtime).speed_probe(profile, precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"key": key, "probe": probe}, indent=1) + "\n")
    return probe


def slower_than_fp32(profile) -> dict[str, dict]:
    """``{precision: probe}`` for each precision of ``profile`` that runs here, computed as asked,
    but measured slower than fp32 (bf16 on a CPU with AVX-512 BF16 and no AMX)."""
    from edgeseg.targets import precision_available

    out = {}
    for prec in profile.precisions:
        if prec == "fp32" or not _check(lambda: precision_available(profile, prec))[0]:
            continue
        probe = guarded(lambda: precision_speed(profile, prec))
        if isinstance(probe, dict) and probe.get("ran_as") == probe.get("hint") and probe.get("ratio", 0) > SLOWER:
            out[prec] = probe
    return out


def slower_note(precision: str, probe: dict) -> str:
    """The one line doctor, targets and build print for a precision slower than fp32 here."""
    return (f"{precision} runs on this CPU but measured {probe['ratio']:.2f}x slower than fp32 "
            f"({probe['ms']:.1f} ms against {probe['fp32_ms']:.1f} ms on a probe network): prefer fp32 or int8 here")


def precision_warning(target: str, precision: str | None) -> str | None:
    """``build --precision``'s warning where ``precision`` of ``target`` runs here but slower than fp32."""
    from edgeseg.targets import load_target

    if not precision or precision == "fp32":
        return None
    profile = guarded(lambda: load_target(target))
    if isinstance(profile, dict) or precision not in profile.precisions:
        return None  # a bad target or precision: the build itself says so
    slow = guarded(lambda: slower_than_fp32(profile))
    probe = slow.get(precision) if isinstance(slow, dict) else None
    return slower_note(precision, probe) if probe else None


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
        slow = slower_than_fp32(p) if run_ok else {}
        notes += [slower_note(prec, probe) for prec, probe in slow.items()]
        if run_ok and (probes or {}).get(p.runtime, {}).get("device_seen") is False:
            notes.append(f"{p.runtime} runs the model on this CPU; no {p.device} seen here")
        proxy = (p.extra or {}).get("parity_proxy") or (p.extra or {}).get("parity_proxy_device")
        if not run_ok and proxy:
            notes.append(f"build verifies parity on {proxy} instead")
        rows.append({"target": name, "format": p.format, "runtime": p.runtime, "device": p.device,
                     "build": not missing, "run": bool(run_ok), "why_not_run": None if run_ok else why,
                     "precisions_here": precisions, "install": missing, "notes": notes,
                     "slower_than_fp32": {prec: round(probe["ratio"], 3) for prec, probe in slow.items()}})
    return rows


def report() -> dict:
    from edgeseg.formats import get_unit, unit_names
    from edgeseg.machine import cpu_isa, cpu_model

    isa = cpu_isa()
    probes = {name: guarded(get_unit(name).probe) for name in unit_names()}
    # a runtime's own capability list (OpenVINO's BF16) is the authority for bf16 where it has one
    said = [p["bf16"] for p in probes.values() if isinstance(p.get("bf16"), bool)]
    bf16 = any(said) if said else isa["bf16"]
    rows = targets(probes)
    slow = {r["target"]: r["slower_than_fp32"]["bf16"] for r in rows if "bf16" in r["slower_than_fp32"]}
    return {
        "versions": versions(),
        "machine": {"cpu": cpu_model(), "arch": platform.machine(), "os": platform.platform(), **isa,
                    "bf16_runtime": bf16, "bf16_slower_than_fp32": slow},
        "devices": probes,
        "targets": rows,
    }


__all__ = ["report", "versions", "targets", "precision_speed", "slower_than_fp32", "slower_note",
           "precision_warning", "SLOWER"]
