"""OpenVINO: IR files (fp32, fp16-compressed weights, bf16 compute, int8 from NNCF) on an
Intel CPU or NPU. Export: :mod:`.export`; runtime: :mod:`.runtime`; NNCF on the IR:
:mod:`.quantize`."""

import importlib.util

from edgeseg.formats.base import ParityProxy, Unit, guarded


class OpenVINOUnit(Unit):
    name = "openvino"
    formats = ("openvino",)
    runtime_modules = ("openvino",)
    build_modules = ("openvino",)
    extra = "openvino"
    quantized_checkpoints = ("nncf",)
    distributions = ("openvino",)
    compress_presets = {"CPU": "cpu", "NPU": "npu"}

    def available(self, profile, device: str | None = None) -> tuple[bool, str]:
        ok, why = super().available(profile)
        device = (device or profile.device or "CPU").upper()
        if not ok or device in ("CPU", "AUTO"):
            return ok, why
        try:
            import openvino as ov

            devices = ov.Core().available_devices
        except Exception as exc:  # pragma: no cover - environment dependent
            return False, f"openvino cannot list devices ({exc})"
        if not any(d.upper().startswith(device) for d in devices):
            return False, f"no OpenVINO {device} device here (devices: {', '.join(devices) or 'none'})"
        return True, ""

    def precision_available(self, profile, precision: str) -> tuple[bool, str]:
        if precision == "bf16" and str(profile.device or "CPU").upper() == "CPU":
            from edgeseg.formats.openvino.runtime import cpu_supports_bf16

            if not cpu_supports_bf16():
                return False, "bf16 needs a CPU with bf16 support (AMX or AVX-512 BF16); this one has none"
        return True, ""

    def speed_probe(self, profile, precision: str) -> dict | None:
        """The probe network in this precision's CPU inference hint against f32 (bf16: is it faster?)."""
        from edgeseg.formats.openvino.plain import CPU_INFERENCE_PRECISION

        hint = CPU_INFERENCE_PRECISION.get(precision, "f32")
        if str(profile.device or "CPU").upper() != "CPU" or hint == "f32":
            return None  # fp16 and int8 IRs compute their float ops in f32 on the CPU
        from edgeseg.formats.openvino.probe import measure

        return measure(hint)

    def parity_proxy(self, profile, reason: str, model_file: str):
        device = (profile.extra or {}).get("parity_proxy_device")
        if not device:
            return None
        ok, why = self.available(profile, device)
        if not ok:
            return f"{reason}; the proxy device {device} is not available either ({why})"
        return ParityProxy(None, device, f"{reason}; parity ran the same files on openvino {device} as a proxy")

    def probe(self) -> dict:
        """The devices OpenVINO sees, with their names and capabilities (BF16 on a bf16 CPU)."""
        if importlib.util.find_spec("openvino") is None:
            return {"installed": False, "install": self.install_hint(), "summary": "not installed"}

        def devices():
            import openvino as ov

            core = ov.Core()
            found = {}
            for dev in core.available_devices:
                entry = {"name": str(guarded(lambda: core.get_property(dev, "FULL_DEVICE_NAME")))}
                caps = guarded(lambda: list(core.get_property(dev, "OPTIMIZATION_CAPABILITIES")))
                entry["capabilities"] = caps if isinstance(caps, list) else []
                found[dev] = entry
            return {"installed": True, "version": ov.get_version(), "devices": found,
                    "bf16": "BF16" in (found.get("CPU") or {}).get("capabilities", []),
                    "summary": f"{ov.get_version()}: " + ", ".join(f"{k} ({v['name']})" for k, v in found.items())}

        return guarded(devices)


UNIT = OpenVINOUnit()
