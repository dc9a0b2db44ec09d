"""The machine a benchmark or build ran on: CPU model and ISA, cores, threads, load, runtime versions.

The ISA matters for results, not only for speed: on a CPU with AMX or AVX-512 BF16,
OpenVINO runs f32 models in bf16 unless told otherwise, and int8 speed depends on VNNI /
AMX-INT8. Reports therefore carry :func:`cpu_isa` beside the CPU's name.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: /proc/cpuinfo flags that decide int8 / bf16 / fp16 speed (and OpenVINO's default precision)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8",
             "avx512_fp16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (x86 ``flags``, Arm ``Features``), empty where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_isa(flags: set[str] | None = None) -> dict:
    """The widest ISA level of interest (``AMX``, ``AVX-512 VNNI``, ``AVX-512``, ``AVX2``, or the
    architecture), whether the CPU has bf16 and int8 dot-product instructions, and its flags
    among :data:`ISA_FLAGS`."""
    f = cpu_flags() if flags is None else set(flags)
    if {"amx_bf16", "amx_int8"} & f:
        isa = "AMX"
    elif "avx512_vnni" in f:
        isa = "AVX-512 VNNI"
    elif "avx512f" in f:
        isa = "AVX-512"
    elif "avx2" in f:
        isa = "AVX2 VNNI" if "avx_vnni" in f else "AVX2"
    else:
        isa = platform.machine() or "unknown"
    return {"isa": isa, "bf16": bool({"avx512_bf16", "amx_bf16"} & f),
            "int8_dot": bool({"avx512_vnni", "avx_vnni", "amx_int8"} & f),
            "flags": [x for x in ISA_FLAGS if x in f]}


def _physical_cores() -> int | None:
    try:
        seen, phys, core = set(), None, None
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("physical id"):
                phys = line.split(":", 1)[1].strip()
            elif line.startswith("core id"):
                core = line.split(":", 1)[1].strip()
                seen.add((phys, core))
        return len(seen) or None
    except OSError:
        return None


def machine_info(threads: int | None = None) -> dict:
    """CPU model, logical / physical / usable cores, the threads asked for, load average, OS, Python."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    isa = cpu_isa()
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "usable_cores": usable,
        "threads": threads,
        "isa": isa["isa"],
        "isa_flags": isa["flags"],
        "avx512": "avx512f" in isa["flags"],
        "vnni": isa["int8_dot"],
        "bf16": isa["bf16"],
        "load_average": load,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "hostname": platform.node(),
    }


#: the packages whose versions an artifact's manifest and a bench report record, besides
#: each format unit's own (``Unit.distributions``, added by ``edgeseg.formats.tool_versions``)
TOOL_PACKAGES = ("edgeseg", "torch", "torchao", "numpy", "nncf")


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None."""
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def tool_versions() -> dict:
    """Versions of the installed tools that matter for an artifact (missing ones left out)."""
    return {pkg: v for pkg in TOOL_PACKAGES if (v := package_version(pkg)) is not None}


#: the name bench reports use
runtime_versions = tool_versions


__all__ = ["machine_info", "runtime_versions", "tool_versions", "package_version", "cpu_model", "cpu_flags",
           "cpu_isa", "ISA_FLAGS", "TOOL_PACKAGES"]
