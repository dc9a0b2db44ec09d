"""The machine a benchmark ran on (CPU model, cores, threads, load) and the runtime versions."""

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
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "usable_cores": usable,
        "threads": threads,
        "avx512": " avx512f" in flags,
        "vnni": "avx512_vnni" in flags or "avx_vnni" in flags,
        "load_average": load,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "hostname": platform.node(),
    }


def runtime_versions() -> dict:
    """Versions of edgeseg and of every installed runtime / export tool."""
    from edgeseg.build import tool_versions

    return tool_versions()


__all__ = ["machine_info", "runtime_versions"]
