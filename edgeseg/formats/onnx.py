"""ONNX export for ONNX Runtime: fp32 (opset 17, static NCHW) and int8 (static PTQ, QDQ).

fp32: ``model.onnx`` (portable; the runtime applies ORT_ENABLE_ALL when it opens it) and
``model.opt.onnx``, the graph after ORT_ENABLE_ALL saved through
``SessionOptions.optimized_model_filepath`` -- specific to the CPU class it was built on
(it may hold fused contrib ops / NCHWc layouts), kept for inspection and faster start-up
on the same hardware. int8: ``model_int8.onnx`` from ``onnxruntime.quantization.quantize_static``
(QDQ format, per-channel int8 weights, uint8 activations, MinMax calibration over the
calibration images) after ``quant_pre_process`` (shape inference + graph cleanup).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np

from edgeseg.formats.base import BuildError, ExportResult, export_step, require_calib

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_fp32(model, input_size, path: Path, *, opset: int = 17, dynamic: bool = False) -> Path:
    """``torch.onnx.export`` of a SegmentationModel (TorchScript exporter), checked with onnx.checker."""
    import onnx
    import torch

    from edgeseg.formats.onnx_model import OnnxModel

    if isinstance(model, OnnxModel):  # a finished ONNX model: its adapted graph, not a trace
        with export_step("ONNX graph (from the source file)", path):
            Path(path).write_bytes(model.graph_at(input_size, dynamic=dynamic))
            onnx.checker.check_model(str(path))
        return Path(path)
    h, w = input_size
    x = torch.zeros(1, 3, int(h), int(w))
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"}} if dynamic else None
    path = Path(path)
    with export_step(f"ONNX export (opset {opset})", path), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deliberate
        with torch.no_grad():
            torch.onnx.export(model.eval(), (x,), str(path), dynamo=False, opset_version=int(opset),
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes,
                              do_constant_folding=True)
        onnx.checker.check_model(str(path))
    return path


def ort_optimize(src: Path, dst: Path, level: str = "ORT_ENABLE_ALL") -> Path:
    """Save the graph ONNX Runtime runs after its optimisations (``optimized_model_filepath``)."""
    import onnxruntime as ort

    with export_step(f"ORT graph optimisation ({level})", dst):
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        so.optimized_model_filepath = str(dst)
        so.log_severity_level = 3  # the "hardware specific" warning is expected and documented
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    return dst


class _CalibReader:
    """onnxruntime.quantization CalibrationDataReader over a list of NCHW arrays."""

    def __init__(self, arrays, input_name: str):
        self._items = [{input_name: np.ascontiguousarray(a, dtype=np.float32)} for a in arrays]
        self._it = iter(self._items)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._items)


def quantize_qdq(src: Path, dst: Path, calib, *, symmetric: bool = False, per_channel: bool = True,
                 activation_type: str = "QUInt8", weight_type: str = "QInt8", method: str = "MinMax",
                 extra_options: dict | None = None, work_dir: Path | None = None) -> dict:
    """Static post-training quantization to a QDQ graph; returns the ``quantization`` manifest entry."""
    from onnxruntime import quantization as q

    work_dir = Path(work_dir or Path(dst).parent)
    pre = work_dir / "model.pre.onnx"
    preprocessed = False
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        with export_step("quantization pre-processing", pre):
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        preprocessed = True
    except BuildError:
        shutil.copyfile(src, pre)  # pre-processing is an optimisation, not required
    if symmetric:
        activation_type = weight_type = "QInt8"
    opts = {"ActivationSymmetric": bool(symmetric), "WeightSymmetric": True}
    opts.update(extra_options or {})
    reader = _CalibReader(calib, INPUT_NAME)
    with export_step("int8 static quantization (QDQ)", dst):
        q.quantize_static(str(pre), str(dst), reader, quant_format=q.QuantFormat.QDQ, per_channel=per_channel,
                          activation_type=getattr(q.QuantType, activation_type),
                          weight_type=getattr(q.QuantType, weight_type),
                          calibrate_method=getattr(q.CalibrationMethod, method), extra_options=opts)
    pre.unlink(missing_ok=True)
    return {"method": "onnxruntime.quantize_static", "format": "QDQ", "calibrate_method": method,
            "calibration_images": len(calib), "per_channel": per_channel, "activation_type": activation_type,
            "weight_type": weight_type, "symmetric_activations": bool(symmetric), "pre_processed": preprocessed,
            "extra_options": {k: v for k, v in opts.items()}}


def qat_summary(quantized: dict) -> dict:
    """The checkpoint's quantization entry for the manifest (without the bulky NNCF config)."""
    return {k: v for k, v in (quantized or {}).items() if k != "nncf_config"}


def export_qat_qdq(model, input_size, dst: Path, *, opset: int, dynamic: bool, quantized: dict) -> dict:
    """``model`` holds NNCF quantizers (a QAT checkpoint): export them as Q/DQ pairs to ``dst``;
    returns the ``quantization`` manifest entry."""
    from edgeseg.compress.quant import set_export_mode

    n = set_export_mode(model, "qdq")
    if n == 0:
        raise BuildError("the checkpoint says it is quantized but the model holds no NNCF quantizers: "
                         "re-run `edgeseg compress`")
    export_fp32(model, input_size, dst, opset=opset, dynamic=dynamic)
    ops = count_ops(dst)
    return {"method": "QAT checkpoint: NNCF quantizers exported as ONNX QuantizeLinear/DequantizeLinear",
            "format": "QDQ", "quantizers": n, "calibration_images": 0, "checkpoint": qat_summary(quantized),
            "qdq_nodes": {"QuantizeLinear": ops.get("QuantizeLinear", 0),
                          "DequantizeLinear": ops.get("DequantizeLinear", 0)}}


def count_ops(path: Path) -> dict:
    import onnx

    counts: dict = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def check_forbidden(path: Path, profile) -> None:
    """BuildError when the graph holds an op the target's ``constraints.forbidden`` lists."""
    forbidden = set((profile.constraints or {}).get("forbidden") or [])
    found = sorted(forbidden & set(count_ops(path)))
    if found:
        raise BuildError(f"the ONNX graph of '{path.name}' uses {', '.join(found)}, which target "
                         f"'{profile.name}' cannot run: choose a model without it or another target")




def export(model, info, *, input_size, precision: str, out_dir: Path, profile, calib=None,
           quantized: dict | None = None) -> ExportResult:
    out_dir = Path(out_dir)
    opset = int(profile.opset or 17)
    if quantized:
        dst = out_dir / "model_int8.onnx"
        qinfo = export_qat_qdq(model, input_size, dst, opset=opset, dynamic=profile.shape == "dynamic", quantized=quantized)
        check_forbidden(dst, profile)
        return ExportResult(dst, [dst], precision, {"files": {"model": dst.name}, "opset": opset,
                                                     "quantization": qinfo})
    require_calib(precision, calib)
    fp32 = export_fp32(model, input_size, out_dir / "model.onnx", opset=opset, dynamic=profile.shape == "dynamic")
    check_forbidden(fp32, profile)
    extra = profile.extra or {}
    if precision == "fp32":
        files = [fp32]
        details = {"files": {"model": "model.onnx"}, "opset": opset}
        level = extra.get("graph_optimization_level", "ORT_ENABLE_ALL")
        if level:
            opt = ort_optimize(fp32, out_dir / "model.opt.onnx", level)
            files.append(opt)
            details["files"]["optimized"] = opt.name
            details["ort_optimization"] = {"level": level, "file": opt.name,
                                           "note": "optimised for this CPU class; model.onnx is the portable file"}
        return ExportResult(fp32, files, precision, details)
    if precision == "int8":
        dst = out_dir / "model_int8.onnx"
        qinfo = quantize_qdq(fp32, dst, calib, per_channel=bool(extra.get("per_channel", True)),
                             activation_type=extra.get("activation_type", "QUInt8"),
                             weight_type=extra.get("weight_type", "QInt8"),
                             method=extra.get("calibrate_method", "MinMax"), work_dir=out_dir)
        fp32.unlink()
        ops = count_ops(dst)
        qinfo["qdq_nodes"] = {"QuantizeLinear": ops.get("QuantizeLinear", 0),
                              "DequantizeLinear": ops.get("DequantizeLinear", 0)}
        return ExportResult(dst, [dst], precision, {"files": {"model": dst.name}, "opset": opset,
                                                     "quantization": qinfo})
    raise BuildError(f"the onnx exporter cannot build precision '{precision}' for target '{profile.name}'")


def export_any(model, input_size, path: Path) -> Path:
    """ONNX (opset 17) of a plain or NNCF-quantized torch model (quantizers as QDQ pairs)."""
    import torch

    from edgeseg.compress.quant import set_export_mode
    from edgeseg.native_logs import captured

    x = torch.zeros(1, 3, *input_size)

    quantized = set_export_mode(model, "qdq")
    try:
        with warnings.catch_warnings(), torch.no_grad(), captured():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (x,), str(path), dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["logits"], do_constant_folding=True)
    finally:
        if quantized:
            set_export_mode(model, "fake_quantize")
    return path
