"""OpenVINO IR export: fp32, fp16-compressed weights, or int8 from NNCF post-training quantization.

The PyTorch model is converted with ``openvino.convert_model(model, example_input=x,
input=[1, 3, H, W])`` -- a static shape, which the NPU plugin requires and the CPU plugin
runs fastest -- and written with ``openvino.save_model(ov_model, "model.xml",
compress_to_fp16=...)`` (``model.xml`` + ``model.bin``):

* ``fp32``: ``compress_to_fp16=False``.
* ``fp16``: ``compress_to_fp16=True``: weights stored as fp16 (half the file). The CPU
  plugin decompresses them and computes in f32 (edgeseg's runtime sets
  ``INFERENCE_PRECISION_HINT``); the NPU computes in fp16.
* ``bf16``: the fp32 IR, run by the CPU plugin with ``INFERENCE_PRECISION_HINT=bf16``
  (``openvino.inference_precision`` in the manifest). Only on a CPU that has bf16
  (AMX / AVX-512 BF16: OpenVINO lists ``BF16`` in its capabilities); refused elsewhere,
  where OpenVINO would silently compute f32.
* ``int8``: ``nncf.quantize(ov_model, nncf.Dataset(calib), preset=..., subset_size=len(calib),
  target_device=...)`` on the fp32 OpenVINO model (PTQ: FakeQuantize nodes with ranges from
  the calibration images; per-channel int8 weights). ``profile.extra.nncf_preset`` picks
  ``mixed`` (asymmetric activations; default for the CPU) or ``performance`` (symmetric;
  default for the NPU). ``target_device`` comes from the profile's device (CPU / NPU).
  A QAT checkpoint needs none of this: its trained NNCF quantizers convert to FakeQuantize
  ops directly.

Static-shape check (``details["ir_check"]``): the model must not be dynamic and every op's
output shape must be static; ops whose output shape depends on data (NonZero, ...) are
named. For the ``NPU`` device the IR is also compiled for ``NPU`` when OpenVINO lists one;
otherwise ``details["runtime_note"]`` says so and the parity check runs the same IR on
the CPU (``profile.extra.parity_proxy_device``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.errors import ConfigError, require
from edgeseg.formats.base import BuildError, ExportResult, export_step, require_calib
from edgeseg.formats.openvino.runtime import CPU_INFERENCE_PRECISION

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
PRESETS = ("mixed", "performance")
#: op types whose output shape depends on the data: never static-compilable
DATA_DEPENDENT_OPS = ("NonZero", "NonMaxSuppression", "Unique", "If", "Loop")


def _ov():
    return require("openvino", "openvino", "the OpenVINO export")


def convert(model, input_size) -> "object":
    """The static-shape ``ov.Model`` of a PyTorch SegmentationModel (input named ``input``)."""
    import torch

    from edgeseg.formats.onnx_model import OnnxModel

    ov = _ov()
    h, w = (int(v) for v in input_size)
    if isinstance(model, OnnxModel):  # a finished ONNX model: OpenVINO reads its adapted graph
        import tempfile

        with tempfile.TemporaryDirectory(prefix="edgeseg-ov-") as tmp:
            src = Path(tmp) / "model.onnx"
            src.write_bytes(model.graph_at((h, w), dynamic=False))
            ov_model = ov.convert_model(str(src))
    else:
        x = torch.zeros(1, 3, h, w)
        with torch.no_grad():
            ov_model = ov.convert_model(model.eval(), example_input=x, input=[1, 3, h, w])
    ov_model.inputs[0].get_tensor().set_names({INPUT_NAME})
    ov_model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    return ov_model


def quantize_int8(ov_model, calib, *, preset: str = "mixed", device: str | None = None,
                  fast_bias_correction: bool = True):
    """NNCF PTQ of an OpenVINO model; returns ``(quantized_model, quantization_details)``."""
    nncf = require("nncf", "openvino", "int8 quantization for OpenVINO")
    preset = str(preset).lower()
    if preset not in PRESETS:
        raise ConfigError(f"nncf_preset '{preset}' is not one of {', '.join(PRESETS)}: fix 'extra.nncf_preset' "
                          f"in the target file")
    target = {"CPU": nncf.TargetDevice.CPU, "NPU": nncf.TargetDevice.NPU}.get(str(device or "CPU").upper(),
                                                                            nncf.TargetDevice.ANY)
    from edgeseg.progress import Tracked

    items = [np.ascontiguousarray(a, dtype=np.float32) for a in calib]
    qmodel = nncf.quantize(ov_model, nncf.Dataset(Tracked(items, "calibration (nncf.quantize)")),
                           preset=getattr(nncf.QuantizationPreset, preset.upper()),
                           target_device=target, subset_size=len(items),
                           fast_bias_correction=fast_bias_correction)
    fq = sum(1 for op in qmodel.get_ops() if op.get_type_name() == "FakeQuantize")
    return qmodel, {"method": "nncf.quantize (post-training)", "preset": preset,
                    "target_device": target.name, "subset_size": len(items),
                    "calibration_images": len(items), "fast_bias_correction": fast_bias_correction,
                    "fake_quantize_nodes": fq, "weights": "int8 per-channel (symmetric)",
                    "activations": "int8 " + ("asymmetric" if preset == "mixed" else "symmetric")}


def check_static(ov_model) -> dict:
    """Static-shape report of an ``ov.Model``: ``{"static": bool, "problems": [...], "ops": {type: count}}``."""
    problems = []
    counts: dict = {}
    if ov_model.is_dynamic():
        problems.append("the model has dynamic inputs/outputs")
    for op in ov_model.get_ordered_ops():
        t = op.get_type_name()
        counts[t] = counts.get(t, 0) + 1
        if t in DATA_DEPENDENT_OPS:
            problems.append(f"{t} '{op.get_friendly_name()}' has a data-dependent output shape")
            continue
        for i in range(op.get_output_size()):
            if op.get_output_partial_shape(i).is_dynamic:
                problems.append(f"{t} '{op.get_friendly_name()}' output {i} has a dynamic shape "
                                f"{op.get_output_partial_shape(i)}")
    return {"static": not problems, "problems": problems[:20], "ops": dict(sorted(counts.items()))}


def try_compile(xml: Path, device: str) -> dict:
    """Compile the IR for ``device`` when OpenVINO lists it; otherwise say it is absent."""
    ov = _ov()
    core = ov.Core()
    devices = list(core.available_devices)
    present = any(d.upper().startswith(device.upper()) for d in devices)
    if not present:
        return {"device": device, "present": False, "compiled": False, "available_devices": devices}
    with export_step(f"OpenVINO compile for {device}"):
        core.compile_model(core.read_model(str(xml)), device, {"PERFORMANCE_HINT": "LATENCY"})
    return {"device": device, "present": True, "compiled": True, "available_devices": devices}




def export(model, info, *, input_size, precision: str, out_dir: Path, profile, calib=None,
           quantized: dict | None = None) -> ExportResult:
    ov = _ov()
    out_dir = Path(out_dir)
    if not quantized:
        require_calib(precision, calib)
    if precision not in ("fp32", "fp16", "bf16", "int8"):
        raise BuildError(f"the openvino exporter cannot build precision '{precision}' for target '{profile.name}'")
    extra = profile.extra or {}
    device = str(profile.device or "CPU").upper()
    if precision == "bf16":
        from edgeseg.formats.openvino.runtime import check_bf16

        check_bf16(what=f"--precision bf16 for target '{profile.name}'")
    h, w = (int(v) for v in input_size)
    xml = out_dir / "model.xml"
    if quantized:
        from edgeseg.compress.quant import set_export_mode

        set_export_mode(model, "fake_quantize")
    with export_step("OpenVINO conversion (convert_model)"):
        ov_model = convert(model, (h, w))
    quant = None
    if quantized:
        from edgeseg.formats.onnx import qat_summary

        # the QAT quantizers became FakeQuantize ops: nothing to calibrate
        quant = {"method": "QAT checkpoint: NNCF quantizers converted to OpenVINO FakeQuantize",
                 "fake_quantize_nodes": sum(1 for op in ov_model.get_ops() if op.get_type_name() == "FakeQuantize"),
                 "calibration_images": 0, "checkpoint": qat_summary(quantized)}
    elif precision == "int8":
        default_preset = "performance" if device == "NPU" else "mixed"
        with export_step("NNCF post-training quantization"):
            ov_model, quant = quantize_int8(ov_model, calib, preset=extra.get("nncf_preset", default_preset),
                                            device=device,
                                            fast_bias_correction=bool(extra.get("fast_bias_correction", True)))
    with export_step(f"OpenVINO save_model ({precision})", xml):
        ov.save_model(ov_model, str(xml), compress_to_fp16=(precision == "fp16"))
    bin_ = xml.with_suffix(".bin")
    if not bin_.is_file():
        raise BuildError(f"OpenVINO save_model wrote no weights file '{bin_}'")
    ir_check = check_static(ov_model)
    if profile.shape == "static" and not ir_check["static"]:
        raise BuildError(f"target '{profile.name}' needs static shapes but the IR has: "
                         f"{'; '.join(ir_check['problems'][:3])}")
    details = {
        "files": {"model": xml.name, "weights": bin_.name},
        "input": {"name": INPUT_NAME, "size": [h, w], "layout": "NCHW", "dtype": "float32", "quant": None},
        "output": {"name": OUTPUT_NAME, "layout": "NCHW", "kind": "logits", "dtype": "float32", "quant": None,
                   "size": [h, w]},
        "ir_check": ir_check,
        "openvino": {"version": ov.get_version(), "compress_to_fp16": precision == "fp16",
                     "performance_hint": extra.get("performance_hint", "LATENCY"),
                     # what the CPU plugin is told to compute in (it defaults to bf16 on AMX CPUs)
                     "inference_precision": CPU_INFERENCE_PRECISION[precision] if device == "CPU"
                     else None},
    }
    if quant is not None:
        details["quantization"] = quant
    if device not in ("CPU", "AUTO"):
        comp = try_compile(xml, device)
        details["compiler"] = {"name": f"openvino {device} plugin", "command": f"ov.Core().compile_model(model.xml, "
                               f"'{device}')", "ran": comp["compiled"], "report": comp}
        if not comp["present"]:
            proxy = extra.get("parity_proxy_device", "CPU")
            details["compiler"]["reason"] = f"no {device} device here (OpenVINO devices: " \
                                            f"{', '.join(comp['available_devices']) or 'none'})"
            details["runtime_note"] = (
                f"no {device} here: the IR was checked for static shapes ({'ok' if ir_check['static'] else 'FAILED'}) "
                f"but not compiled for {device}; parity was measured on {proxy} with the same IR as a proxy")
    return ExportResult(xml, [xml, bin_], precision, details)
