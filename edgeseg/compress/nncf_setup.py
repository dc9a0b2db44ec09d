"""NNCF access for edgeseg: lazy import, per-target presets, and the CPU quantizer kernels.

CPU kernels: NNCF's torch backend compiles a C++ extension (``quantized_functions_cpu``)
the first time a fake-quantizer runs on the CPU. That takes minutes on a small machine
and hangs for good on a stale build lock. edgeseg installs NNCF's own torch-native
reference kernels (``nncf.torch.quantization.reference.ReferenceQuantize``, the same
code NNCF falls back to when the compile fails) in eager mode instead, unless
``EDGESEG_NNCF_COMPILE=1`` is set. Results are identical; QAT steps are a little slower.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from edgeseg.errors import ConfigError, require


def nncf():
    from edgeseg.native_logs import captured

    with captured():  # "INFO:nncf:NNCF initialized successfully..." goes to stdout on first import
        mod = require("nncf", "openvino", "model compression")
    _install_cpu_kernels()
    return mod


_KERNELS_DONE = False


def _install_cpu_kernels() -> None:
    global _KERNELS_DONE
    if _KERNELS_DONE or os.environ.get("EDGESEG_NNCF_COMPILE") == "1":
        return
    try:
        from nncf.torch.quantization.extensions import QuantizedFunctionsCPU
        from nncf.torch.quantization.reference import ReferenceBackendType, ReferenceQuantize
    except ImportError:  # pragma: no cover - other NNCF layouts: let NNCF decide
        return
    ref = ReferenceQuantize(ReferenceBackendType.TORCH)

    class _EagerReference:
        Quantize_forward = staticmethod(ref.forward)
        Quantize_backward = staticmethod(ref.backward)

    if getattr(QuantizedFunctionsCPU, "_loaded_namespace", None) is None:
        QuantizedFunctionsCPU._loaded_namespace = _EagerReference
    _KERNELS_DONE = True


@dataclass(frozen=True)
class TargetPreset:
    name: str
    target_device: str  # nncf.TargetDevice member name
    preset: str  # nncf.QuantizationPreset member name
    note: str


#: Quantization presets per deployment target. NNCF quantizes weights per channel
#: (symmetric) and activations per tensor on every device; the preset picks
#: symmetric (PERFORMANCE) or asymmetric (MIXED) activations.
TARGETS: dict[str, TargetPreset] = {
    "cpu": TargetPreset("cpu", "CPU", "MIXED",
                        "OpenVINO / ONNX Runtime on x86: per-channel symmetric weights, per-tensor asymmetric "
                        "activations"),
    "npu": TargetPreset("npu", "NPU", "PERFORMANCE",
                        "Intel NPU: per-channel symmetric weights, per-tensor symmetric activations"),
    # not NNCF: quantized with litert-torch's PT2E quantizer (edgeseg/formats/litert/pt2e.py) so
    # that the TFLite build converts the trained quantizers themselves
    "edgetpu": TargetPreset("edgetpu", "ANY", "PERFORMANCE",
                            "Edge TPU / TFLite (PT2E with litert-torch's quantizer, not NNCF): per-channel "
                            "symmetric int8 weights, per-tensor symmetric int8 activations; build with "
                            "--target coral"),
    "jetson": TargetPreset("jetson", "ANY", "PERFORMANCE",
                           "TensorRT explicit quantization (Jetson): per-channel symmetric weights, per-tensor "
                           "symmetric activations (zero point 0, which TensorRT requires)"),
    "any": TargetPreset("any", "ANY", "PERFORMANCE", "hardware-agnostic, symmetric everywhere"),
}


def target_preset(name: str) -> TargetPreset:
    key = str(name).lower()
    if key not in TARGETS:
        raise ConfigError(f"unknown compression target '{name}': use one of {', '.join(TARGETS)}")
    return TARGETS[key]


def nncf_args(target: str) -> dict:
    """``target_device`` and ``preset`` keyword arguments for nncf.quantize*."""
    n = nncf()
    t = target_preset(target)
    return {"target_device": getattr(n.TargetDevice, t.target_device),
            "preset": getattr(n.QuantizationPreset, t.preset)}


def ignored_scope(names=None, patterns=None):
    """An ``nncf.IgnoredScope`` (or None) keeping the named layers in floating point.

    ``names`` are NNCF node names (e.g. ``head/cls/conv2d/0``); ``patterns`` are regular
    expressions over node names; a plain module path such as ``head`` is accepted as a
    pattern too and matches every node of that module. ``validate=False``: a pattern
    that matches nothing is not an error (models differ)."""
    names, patterns = list(names or []), list(patterns or [])
    if not names and not patterns:
        return None
    return nncf().IgnoredScope(names=names, patterns=patterns, validate=False)


def module_pattern(module: str) -> str:
    """Regex matching the NNCF torch node names of every op inside module ``module``."""
    import re

    # NNCF 3.x torch node names are the module path with '/' separators plus the op:
    # ``head/cls/conv2d/0`` for ``model.head.cls``.
    return rf"^{re.escape(module.replace('.', '/'))}/.*"
