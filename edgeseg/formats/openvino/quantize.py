"""NNCF quantization that works on the OpenVINO model itself: accuracy-controlled PTQ
(``nncf.quantize_with_accuracy_control`` takes an OpenVINO model) and the mIoU of an
OpenVINO model on the validation images, which `edgeseg compress` reports.
"""

from __future__ import annotations

import numpy as np

from edgeseg.compress.common import Data, padded_items
from edgeseg.formats.base import median_latency
from edgeseg.compress.nncf_setup import ignored_scope, nncf, nncf_args, target_preset
from edgeseg.native_logs import captured
from edgeseg.metrics import score
from edgeseg.progress import Tracked


def to_openvino(model, input_size):
    from edgeseg.formats.openvino.export import convert

    with captured():
        return convert(model.eval(), input_size)


def _classes(compiled):
    """An OpenVINO compiled model as a ``predict(x) -> class map`` for :func:`edgeseg.metrics.score`."""
    out = compiled.outputs[0]
    return lambda x: np.asarray(compiled(np.ascontiguousarray(x, dtype=np.float32))[out]).argmax(1)


def _ov_miou(compiled, items, num_classes: int, ignore_index: int) -> float:
    cm = score(items, _classes(compiled), num_classes, ignore_index, label="validation (openvino)")
    return float(cm.summary()["miou"] or 0.0)


def ov_summary(ov_model, data: Data, input_size) -> dict:
    """``ConfusionMatrix.summary`` of an OpenVINO model on the validation images (padded to ``input_size``)."""
    from edgeseg.formats.openvino.runtime import compile_on_cpu

    with captured():
        compiled = compile_on_cpu(ov_model)
    cm = score(padded_items(data, input_size), _classes(compiled), data.info.num_classes, data.info.ignore_index,
               label="val mIoU (openvino)")
    return cm.summary(data.info.classes)


def fake_quantize_names(ov_model) -> set[str]:
    return {op.get_friendly_name() for op in ov_model.get_ops() if op.get_type_name() == "FakeQuantize"}


def ptq_accuracy_control(model, data: Data, input_size, *, max_drop: float = 0.01, target: str = "cpu",
                         ignore_names=None, ignore_patterns=None, max_num_iterations: int = 30):
    """Accuracy-controlled PTQ of the OpenVINO model; returns ``(ov_int8_model, details)``.

    ``details``: fp32 and int8 mIoU (as measured by NNCF's validation function), the drop,
    the number of FakeQuantize nodes before and after, and the quantizers reverted to fp32."""
    n = nncf()
    ov_model = to_openvino(model, input_size)
    items = padded_items(data, input_size)
    calib = [np.ascontiguousarray(c.numpy(), np.float32) for c in data.calibration(input_size)]
    nc, ign = data.info.num_classes, data.info.ignore_index

    def validate(compiled, validation_items) -> float:
        return _ov_miou(compiled, validation_items, nc, ign)

    kwargs = nncf_args(target)
    scope = ignored_scope(ignore_names, ignore_patterns)
    if scope is not None:
        kwargs["ignored_scope"] = scope
    with captured():  # NNCF's bars and log lines, OpenVINO's compiler
        plain = n.quantize(ov_model, n.Dataset(Tracked(calib, "calibration (nncf.quantize)")),
                           subset_size=len(calib), **kwargs)
        fq_plain = fake_quantize_names(plain)
        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        q = n.quantize_with_accuracy_control(
            ov_model, n.Dataset(Tracked(calib, "calibration (accuracy control)")), n.Dataset(items), validate,
            max_drop=float(max_drop), drop_type=n.DropType.ABSOLUTE, subset_size=len(calib),
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=max_num_iterations, ranking_subset_size=min(len(items), 300)),
            **kwargs)
        from edgeseg.formats.openvino.runtime import compile_on_cpu

        fp32_miou = validate(compile_on_cpu(ov_model), items)
        plain_miou = validate(compile_on_cpu(plain, "int8"), items)
        int8_miou = validate(compile_on_cpu(q, "int8"), items)
    fq_after = fake_quantize_names(q)
    reverted = sorted(fq_plain - fq_after)
    return q, {
        "method": "nncf.quantize_with_accuracy_control (OpenVINO)", "max_drop": float(max_drop),
        "drop_type": "absolute mIoU", "target": target_preset(target).name,
        "fp32_miou": fp32_miou, "plain_ptq_miou": plain_miou, "int8_miou": int8_miou,
        "drop": fp32_miou - int8_miou, "within_bound": fp32_miou - int8_miou <= float(max_drop) + 1e-9,
        "fake_quantize_plain": len(fq_plain), "fake_quantize_after": len(fq_after),
        "reverted_to_fp32": reverted,
        "why": ("quantize_with_accuracy_control ranked the quantizers by the mIoU their removal recovers "
                "and reverted the top ones until the drop was within the bound") if reverted else
               "plain PTQ was already within the bound; nothing reverted",
    }


def latency(ov_model, input_size, *, runs: int, warmup: int, threads: int) -> dict:
    """Median latency of an OpenVINO model on the CPU (f32 compute), batch 1."""
    from edgeseg.formats.openvino.runtime import compile_on_cpu

    # f32 compute for the float ops, as the openvino-cpu artifacts of these models run
    with captured():
        compiled = compile_on_cpu(ov_model, PERFORMANCE_HINT="LATENCY", INFERENCE_NUM_THREADS=int(threads))
        req = compiled.create_infer_request()
    x = np.random.default_rng(0).standard_normal((1, 3, *input_size)).astype(np.float32)
    return median_latency(lambda: req.infer({0: x}), runs, warmup, "latency: openvino-cpu")


def save_ir(ov_model, path) -> None:
    """Write an OpenVINO model as IR (model.xml + model.bin) with fp32 weights."""
    import openvino as ov

    with captured():
        ov.save_model(ov_model, str(path), compress_to_fp16=False)
