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
            try:
                torch.onnx.export(model.eval(), (x,), str(path), dynamo=False, opset_version=int(opset),
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes,
                                  do_constant_folding=True)
            except Exception as exc:
                _explain_export_error(exc, model, input_size)
                raise
        onnx.checker.check_model(str(path))
    return path


def _explain_export_error(exc: Exception, model, input_size) -> None:
    """One line naming the layers where torch.onnx rejects adaptive pooling whose output size does
    not divide its input at this size (pyramid pooling, as in Fast-SCNN or PSPNet)."""
    import torch

    text = str(exc)
    if "adaptive_" not in text or "not factor of input size" not in text:
        return
    kinds = (torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveMaxPool2d)
    layers = [name for name, m in model.named_modules() if isinstance(m, kinds)]
    sizes = sorted({v for m in model.modules() if isinstance(m, kinds)
                    for v in ((m.output_size,) if isinstance(m.output_size, int) else m.output_size) if v})
    raise BuildError(f"ONNX export (torch.onnx) cannot export adaptive pooling whose output size does not divide "
                     f"its input at {input_size[0]}x{input_size[1]} (layers {', '.join(layers[:4]) or '?'}, output "
                     f"sizes {sizes}): build at an --img-size where the feature maps those layers read divide by "
                     f"{sizes}, or for openvino-cpu, which converts the PyTorch graph without ONNX") from None


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

    def __iter__(self):  # qdq_loss_debug iterates the reader
        return iter(self._items)


def reduce_range_here(setting) -> bool:
    """7-bit weights where ONNX Runtime's x86 int8 kernels would saturate: on a CPU without VNNI
    they multiply u8 x s8 pairs with vpmaddubsw, whose int16 sum overflows with full-range
    weights. ``auto``: where this machine, on which parity runs, has no VNNI."""
    if setting == "auto":
        import platform

        from edgeseg.machine import cpu_isa

        return platform.machine().lower() in ("x86_64", "amd64") and not cpu_isa()["int8_dot"]
    return bool(setting)


def check_node_names(path: Path, names) -> None:
    """One line for a --keep-float name the graph does not have, with some it does."""
    import onnx

    nodes = [n for n in onnx.load(str(path), load_external_data=False).graph.node]
    have = {n.name for n in nodes}
    unknown = [n for n in names if n not in have]
    if unknown:
        layers = [n.name for n in nodes if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm")][:4]
        raise BuildError(f"--keep-float: the graph has no node {', '.join(repr(u) for u in unknown[:3])} (its layers "
                         f"are named like {', '.join(layers)}; `--keep-float auto` finds them)")


def quantize_qdq(src: Path, dst: Path, calib, *, symmetric: bool = False, per_channel: bool = True,
                 activation_type: str = "QUInt8", weight_type: str = "QInt8", method: str = "MinMax",
                 extra_options: dict | None = None, work_dir: Path | None = None, keep_float=(),
                 reduce_range: bool = False) -> dict:
    """Static post-training quantization to a QDQ graph, the nodes named in ``keep_float`` left in
    float; returns the ``quantization`` manifest entry."""
    from onnxruntime import quantization as q

    keep_float = list(keep_float or ())
    check_node_names(src, keep_float)

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
                          calibrate_method=getattr(q.CalibrationMethod, method), extra_options=opts,
                          nodes_to_exclude=keep_float, reduce_range=bool(reduce_range))
    if keep_float:
        float_inputs(dst, keep_float)
    pre.unlink(missing_ok=True)
    return {"method": "onnxruntime.quantize_static", "format": "QDQ", "calibrate_method": method,
            "kept_in_float": keep_float, "reduce_range": bool(reduce_range),
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
           quantized: dict | None = None, keep_float=()) -> ExportResult:
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
                             method=extra.get("calibrate_method", "MinMax"), work_dir=out_dir,
                             keep_float=keep_float, reduce_range=reduce_range_here(extra.get("reduce_range", False)))
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


def _sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    noise = float(np.sum((ref.astype(np.float64) - test) ** 2))
    signal = float(np.sum(ref.astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(max(signal, 1e-30) / noise)


def rank_qdq_layers(fp32: Path, int8: Path, calib, work_dir: Path, max_images: int = 8,
                    as_written: bool = False) -> list[dict]:
    """The quantized graph's layers ranked by the error each adds, on real images.

    ONNX Runtime's ``qdq_loss_debug`` runs both graphs with every intermediate tensor as an
    output; for each node of the float graph the SQNR (dB) of its output in the int8 graph
    against the float graph is compared with that of its inputs: the drop is the error the node
    itself adds (its weights' and its activations' quantization). Largest drop first.
    ``as_written``: Q/DQ computed in float, as TensorRT does, not with the CPU's int8 kernels."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import qdq_loss_debug as dbg

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if as_written:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL

    work_dir = Path(work_dir)
    arrays = list(calib)[:max_images]
    acts = {}
    for name, path in (("float", fp32), ("int8", int8)):
        aug = work_dir / f"rank.{name}.onnx"
        dbg.modify_model_output_intermediate_tensors(str(path), str(aug))
        acts[name] = dbg.collect_activations(str(aug), _CalibReader(arrays, INPUT_NAME), session_options=so,
                                             execution_providers=["CPUExecutionProvider"])
        aug.unlink(missing_ok=True)
    graph = onnx.load(str(fp32), load_external_data=False).graph
    quantized = _quantized_nodes(int8)
    sqnr = {}
    for tensor, ref in acts["float"].items():
        got = acts["int8"].get(tensor)
        if got is not None and len(got) == len(ref):
            sqnr[tensor] = min(_sqnr_db(r, g) for r, g in zip(ref, got))
    rows = []
    for node in graph.node:
        outs = [sqnr[t] for t in node.output if t in sqnr]
        if not outs or node.name not in quantized:
            continue
        ins = [sqnr[t] for t in node.input if t in sqnr]
        before = min(ins) if ins else float("inf")
        after = min(outs)
        drop = (before - after) if before != float("inf") else (99.0 - min(after, 99.0))
        if node.name and drop > 0:  # a layer that adds error, and that quantize_static can name
            rows.append({"node": node.name, "op": node.op_type, "sqnr_db": round(after, 2), "drop_db": round(drop, 2)})
    return sorted(rows, key=lambda r: -r["drop_db"])


def _quantized_nodes(int8: Path) -> set[str]:
    """Names of the nodes that read a dequantized tensor: the ones --keep-float can leave in float."""
    import onnx

    graph = onnx.load(str(int8), load_external_data=False).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and any(i in dequantized for i in n.input)}


def rank_artifact_layers(model, input_size, artifact_file: Path, calib, work_dir: Path, opset: int = 17,
                         as_written: bool = False) -> list[dict]:
    """:func:`rank_qdq_layers` of an int8 ONNX artifact against its float graph, exported again
    and pre-processed as quantization saw it (so node names match ``--keep-float``)."""
    work_dir = Path(work_dir)
    fp32 = export_fp32(model, input_size, work_dir / "rank.fp32.onnx", opset=opset)
    pre = work_dir / "rank.pre.onnx"
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=False)
    except Exception:
        shutil.copyfile(fp32, pre)
    try:
        with export_step("per-layer int8 error (onnxruntime qdq_loss_debug)"):
            return rank_qdq_layers(pre, artifact_file, calib, work_dir, as_written=as_written)
    finally:
        fp32.unlink(missing_ok=True)
        pre.unlink(missing_ok=True)


def float_inputs(path: Path, names) -> int:
    """Rewire the named nodes to read the float tensors behind their Q/DQ pairs (quantize_static
    leaves an excluded node's weights in float but still rounds its inputs where the producer is
    quantized), then drop the pairs nothing reads any more. Returns the pairs bypassed."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    inits = {t.name for t in graph.initializer}
    bypassed = 0
    for node in graph.node:
        if node.name not in names:
            continue
        for i, tensor in enumerate(node.input):
            dq = producer.get(tensor)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in inits:
                node.input[i] = q.input[0]
                bypassed += 1
    while True:  # Q/DQ nodes whose outputs nobody reads (graph outputs count as readers)
        read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    onnx.save(model, str(path))
    return bypassed
