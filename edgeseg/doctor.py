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

import ctypes.util
import importlib.util
import platform
import sys
from pathlib import Path

#: packages whose versions doctor shows besides the artifact tools (edgeseg.machine.TOOL_PACKAGES)
MORE_PACKAGES = ("opencv-python-headless", "albumentations", "torch-pruning", "pytest")

#: exporter module -> the packages a build with it needs (import name, distribution, extra)
EXPORTER_NEEDS = {
    "onnx": [("onnx", "onnx", None)],
    "tensorrt": [("onnx", "onnx", None)],
    "openvino": [("openvino", "openvino", "openvino")],
    "tflite": [("litert_torch", "litert-torch", "tflite"), ("ai_edge_litert", "ai-edge-litert", "tflite")],
}


def versions() -> dict:
    """Python and every package of interest; None for those not installed."""
    from edgeseg.machine import TOOL_PACKAGES, package_version

    return {"python": sys.version.split()[0], **{d: package_version(d) for d in TOOL_PACKAGES + MORE_PACKAGES}}


def _guard(fn):
    """fn()'s result, or {"error": one line} when it raises (a broken runtime is a finding)."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - any failure of a third-party probe is reported
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return {"error": f"{type(exc).__name__}: {first[:200]}"}


def _check(fn) -> tuple[bool, str]:
    """An ``(ok, why)`` check, with a check that raises reported as not ok and why."""
    result = _guard(fn)
    return (False, result["error"]) if isinstance(result, dict) else result


def openvino_devices() -> dict:
    if importlib.util.find_spec("openvino") is None:
        return {"installed": False, "install": "pip install 'edgeseg[openvino]'"}

    def probe():
        import openvino as ov

        core = ov.Core()
        devices = {}
        for dev in core.available_devices:
            entry = {"name": str(_guard(lambda: core.get_property(dev, "FULL_DEVICE_NAME")))}
            caps = _guard(lambda: list(core.get_property(dev, "OPTIMIZATION_CAPABILITIES")))
            entry["capabilities"] = caps if isinstance(caps, list) else []
            devices[dev] = entry
        return {"installed": True, "version": ov.get_version(), "devices": devices}

    return _guard(probe)


def onnxruntime_providers() -> dict:
    if importlib.util.find_spec("onnxruntime") is None:
        return {"installed": False, "install": "pip install onnxruntime (a core dependency: reinstall edgeseg)"}

    def probe():
        import onnxruntime as ort

        return {"installed": True, "version": ort.__version__, "providers": list(ort.get_available_providers())}

    return _guard(probe)


def edgetpu() -> dict:
    """libedgetpu (the Edge TPU delegate) and the devices the kernel shows: a PCIe/M.2 card
    as /dev/apex_*, a USB accelerator by its vendor ids (1a6e Global Unichip before its
    firmware is loaded, 18d1:9302 Google after)."""
    lib = ctypes.util.find_library("edgetpu")
    loadable = None
    if lib:
        try:
            ctypes.CDLL(lib)
            loadable = True
        except OSError:
            loadable = False
    pcie = sorted(str(p) for p in Path("/dev").glob("apex_*"))
    usb = []
    for dev in Path("/sys/bus/usb/devices").glob("*"):
        try:
            vendor = (dev / "idVendor").read_text().strip()
            product = (dev / "idProduct").read_text().strip()
        except OSError:
            continue
        if vendor == "1a6e" or (vendor, product) == ("18d1", "9302"):
            usb.append(f"{vendor}:{product}")
    return {"libedgetpu": lib, "loadable": loadable, "pcie_devices": pcie, "usb_devices": usb,
            "install": None if lib else "libedgetpu1-std from Coral's Debian repository (on the device)"}


def cuda() -> dict:
    from edgeseg.machine import package_version

    out = {"tensorrt": package_version("tensorrt")}

    def probe():
        import torch

        if not torch.cuda.is_available():
            return {"available": False, "torch_cuda": torch.version.cuda}
        return {"available": True, "torch_cuda": torch.version.cuda,
                "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}

    out.update(_guard(probe))
    return out


def _missing_for_build(exporter: str) -> list[str]:
    missing = []
    for module, dist, extra in EXPORTER_NEEDS.get(exporter, []):
        if importlib.util.find_spec(module) is None:
            missing.append(f"pip install 'edgeseg[{extra}]'" if extra else f"pip install {dist}")
    return sorted(set(missing))


def targets(edgetpu_seen: bool = False) -> list[dict]:
    """For every shipped target: can it be built here, can its runtime run here, which
    precisions this machine runs, and what to install where something is missing."""
    from edgeseg.targets import list_targets, load_target, precision_available, runtime_available

    rows = []
    for name in list_targets():
        p = load_target(name)
        missing = _missing_for_build(p.exporter)
        run_ok, why = _check(lambda: runtime_available(p))
        precisions, notes = [], []
        for prec in p.precisions:
            prec_ok, prec_why = _check(lambda: precision_available(p, prec)) if run_ok else (False, "")
            if prec_ok:
                precisions.append(prec)
            elif prec_why:
                notes.append(f"{prec}: {prec_why}")
        if str(p.device).lower() == "edgetpu" and run_ok and not edgetpu_seen:
            notes.append("LiteRT runs the .tflite on this CPU; no Edge TPU seen here")
        proxy = (p.extra or {}).get("parity_proxy") or (p.extra or {}).get("parity_proxy_device")
        if not run_ok and proxy:
            notes.append(f"build verifies parity on {proxy} instead")
        rows.append({"target": name, "format": p.format, "runtime": p.runtime, "device": p.device,
                     "build": not missing, "run": bool(run_ok), "why_not_run": None if run_ok else why,
                     "precisions_here": precisions, "install": missing, "notes": notes})
    return rows


def report() -> dict:
    from edgeseg.machine import cpu_isa, cpu_model

    isa = cpu_isa()
    ov = openvino_devices()
    ov_cpu_caps = ((ov.get("devices") or {}).get("CPU") or {}).get("capabilities", [])
    # OpenVINO's own capability list is the authority for bf16 where it is installed.
    bf16 = "BF16" in ov_cpu_caps if ov.get("installed") and "devices" in ov else isa["bf16"]
    tpu = edgetpu()
    return {
        "versions": versions(),
        "machine": {"cpu": cpu_model(), "arch": platform.machine(), "os": platform.platform(), **isa,
                    "openvino_bf16": bf16},
        "devices": {"openvino": ov, "onnxruntime": onnxruntime_providers(), "edgetpu": tpu, "cuda": cuda()},
        "targets": targets(bool(tpu["loadable"] and (tpu["pcie_devices"] or tpu["usb_devices"]))),
    }


__all__ = ["report", "versions", "targets"]
