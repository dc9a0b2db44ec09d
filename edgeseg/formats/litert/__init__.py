"""LiteRT (TFLite): full-integer int8 .tflite files from litert-torch's PT2E quantizer, for
a CPU or the Coral Edge TPU (compiled by edgetpu_compiler). Export: :mod:`.export`;
runtime: :mod:`.runtime`; the quantizer: :mod:`.pt2e`; the Edge TPU op check: :mod:`.edgetpu`."""

import ctypes.util
import importlib.util
from pathlib import Path

from edgeseg.formats.base import Unit

#: any one of these interpreters runs a .tflite
INTERPRETERS = ("ai_edge_litert", "tflite_runtime", "tensorflow")


class LiteRTUnit(Unit):
    name = "litert"
    takes_onnx_models = False  # litert-torch converts PyTorch graphs only
    formats = ("tflite",)
    runtime_modules = INTERPRETERS
    build_modules = ("litert_torch", "ai_edge_litert")
    extra = "tflite"
    quantized_checkpoints = ("pt2e",)  # NNCF's quantizers do not convert: re-quantized from the weights
    distributions = ("litert-torch", "ai-edge-litert", "tflite-runtime")
    compress_presets = {"EDGETPU": "edgetpu"}

    def available(self, profile) -> tuple[bool, str]:
        if any(importlib.util.find_spec(m) is not None for m in INTERPRETERS):
            return True, ""
        return False, f"no TFLite interpreter installed ({self.install_hint()})"


    def probe(self) -> dict:
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
        devices = pcie + usb
        return {"libedgetpu": lib, "loadable": loadable, "pcie_devices": pcie, "usb_devices": usb,
                "device_seen": bool(loadable and devices),
                "install": None if lib else "libedgetpu1-std from Coral's Debian repository (on the device)",
                "summary": f"edge tpu: libedgetpu {lib or 'not found'}; devices: {', '.join(devices) or 'none seen'}"}


UNIT = LiteRTUnit()
