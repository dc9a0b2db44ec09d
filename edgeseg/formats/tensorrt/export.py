"""Jetson / TensorRT artifacts: a static ONNX plus the exact ``trtexec`` command that builds
the engine on the device (engines are specific to the GPU and TensorRT version).

* fp32: ``model.onnx``; ``trtexec ... `` without precision flags.
* fp16: the SAME fp32 ONNX, built by TensorRT with ``--fp16`` (I/O stays fp32, TensorRT
  picks per-layer precision). No fp16 ONNX is written: converting the graph to fp16
  would add a dependency (onnxconverter-common) and TensorRT does it better itself.
* int8: explicit quantization -- Q/DQ nodes in the ONNX from ONNX Runtime static PTQ over
  the calibration images, symmetric int8 activations and weights (zero point 0, as
  TensorRT requires), per-channel weights, biases left in float; ``trtexec --int8``.
  (TensorRT's implicit calibrators are deprecated since 10.1; ``--int8`` without Q/DQ or
  a cache uses arbitrary scales: timing only.) A QAT checkpoint exports its own NNCF
  quantizers as the Q/DQ nodes instead (symmetric ones only: ``compress --target jetson``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edgeseg.formats import onnx as onnx_export
from edgeseg.formats.base import BuildError, ExportResult, require_calib

FLAGS = {"fp32": "", "fp16": "--fp16", "int8": "--int8"}


def trtexec_command(model_file: str, precision: str, engine: str = "model.engine", template: str | None = None) -> str:
    template = template or "trtexec --onnx={model} --saveEngine={engine} {precision_flags}"
    return " ".join(template.format(model=model_file, engine=engine, precision_flags=FLAGS[precision],
                                    out_dir=".").split())




def export(model, info, *, input_size, precision: str, out_dir: Path, profile, calib=None,
           quantized: dict | None = None, keep_float=()) -> ExportResult:
    out_dir = Path(out_dir)
    if precision not in FLAGS:
        raise BuildError(f"the tensorrt exporter cannot build precision '{precision}'")
    opset = int(profile.opset or 17)
    details: dict = {"opset": opset}
    if quantized:
        from edgeseg.compress.quant import asymmetric_quantizers

        asym = asymmetric_quantizers(model)
        if asym:
            raise BuildError(f"TensorRT's explicit quantization needs symmetric int8 (zero point 0), but this QAT "
                             f"checkpoint has {len(asym)} asymmetric quantizers (compress target "
                             f"'{quantized.get('target')}'): re-run `edgeseg compress --qat --target jetson`")
        model_file = out_dir / "model_int8.onnx"
        details["quantization"] = {**onnx_export.export_qat_qdq(model, input_size, model_file, opset=opset,
                                                                dynamic=False, quantized=quantized),
                                   "explicit_quantization": True}
        onnx_export.check_forbidden(model_file, profile)
        return _finish(model_file, precision, profile, details)
    require_calib(precision, calib)
    fp32 = onnx_export.export_fp32(model, input_size, out_dir / "model.onnx", opset=opset, dynamic=False)
    onnx_export.check_forbidden(fp32, profile)
    model_file = fp32
    if precision == "int8":
        dst = out_dir / "model_int8.onnx"
        qinfo = onnx_export.quantize_qdq(fp32, dst, calib, symmetric=True, per_channel=True,
                                         method=(profile.extra or {}).get("calibrate_method", "MinMax"),
                                         extra_options={"QuantizeBias": False}, work_dir=out_dir,
                                         keep_float=keep_float)
        fp32.unlink()
        ops = onnx_export.count_ops(dst)
        qinfo["qdq_nodes"] = {"QuantizeLinear": ops.get("QuantizeLinear", 0),
                              "DequantizeLinear": ops.get("DequantizeLinear", 0)}
        qinfo["explicit_quantization"] = True
        details["quantization"] = qinfo
        model_file = dst
    return _finish(model_file, precision, profile, details)


def _finish(model_file: Path, precision: str, profile, details: dict) -> ExportResult:
    template = (profile.compiler or {}).get("command")
    cmd = trtexec_command(model_file.name, precision, template=template)
    ran = False
    reason = "engines are device-specific: run this command on the Jetson (edgeseg's TensorRT runtime also " \
             "builds the engine itself on first load when tensorrt and a GPU are present)"
    details["compiler"] = {"name": "trtexec", "command": cmd, "ran": ran, "report": None,
                           "reason": reason, "on_path_here": shutil.which("trtexec") is not None}
    details["files"] = {"model": model_file.name}
    details["tensorrt"] = {"precision_flags": FLAGS[precision], "engine_file": "model.engine",
                           "fp16_note": "fp16 = the fp32 ONNX built with --fp16" if precision == "fp16" else None}
    return ExportResult(model_file, [model_file], precision, details)
