"""Int8 quantization with NNCF: post-training, accuracy-controlled post-training,
quantization-aware training, and a per-module sensitivity search.

* :func:`ptq` -- ``nncf.quantize`` on the PyTorch model (FakeQuantize hooks, ranges from
  calibration images). The result is a torch model that trains (QAT) and exports
  (ONNX QDQ, OpenVINO FakeQuantize).
* :func:`qat` -- :func:`ptq` as initialisation, then :func:`edgeseg.compress.common.finetune`
  of the quantized model (weights and quantizer ranges learn).
* :func:`ptq_accuracy_control` -- ``nncf.quantize_with_accuracy_control`` on the OpenVINO
  model (NNCF's accuracy control works on OpenVINO models): quantizers whose removal
  recovers most mIoU are reverted to fp32 until the drop is within ``max_drop``.
* :func:`sensitivity` -- quantize with one top-level module kept in fp32 at a time and
  rank the modules by the mIoU that keeping them in fp32 recovers.
"""

from __future__ import annotations

import copy

import torch

from edgeseg.compress.nncf_setup import ignored_scope, module_pattern, nncf, nncf_args
from edgeseg.compress.common import Data, evaluate, finetune
from edgeseg.progress import Tracked
from edgeseg.errors import CheckpointError
from edgeseg.native_logs import captured
from edgeseg.progress import track


def ptq(model, calib: list[torch.Tensor], *, target: str = "cpu", ignore_names=None, ignore_patterns=None,
        fast_bias_correction: bool = True):
    """A quantized copy of ``model`` (eval mode) from NNCF post-training quantization."""
    n = nncf()
    model = copy.deepcopy(model).eval()
    kwargs = nncf_args(target)
    scope = ignored_scope(ignore_names, ignore_patterns)
    if scope is not None:
        kwargs["ignored_scope"] = scope
    # NNCF's own bars and INFO lines (stdout) are captured; ours counts the calibration images
    with captured():
        q = n.quantize(model, n.Dataset(Tracked(list(calib), "calibration (nncf.quantize)")), subset_size=len(calib),
                       fast_bias_correction=fast_bias_correction, **kwargs)
    return q.eval()


def qat(model, data: Data, *, img_size, target: str = "cpu", epochs: float = 1.0, steps: int = 0,
        lr: float = 1e-5, batch_size: int = 4, ignore_names=None, ignore_patterns=None, calib_size=None, log=None,
        loss: str = "ce"):
    """Quantization-aware training: PTQ initialisation, then fine-tuning of the quantized model.
    ``img_size`` is the fine-tuning crop, ``calib_size`` the (padded) calibration image size
    (default ``img_size``). Returns ``(quantized_model, fine_tune_record)``."""
    q = ptq(model, data.calibration(calib_size or img_size), target=target, ignore_names=ignore_names,
            ignore_patterns=ignore_patterns)
    # batch-norm statistics stay as calibrated: the quantizer ranges were set on them
    record = finetune(q, data, img_size=img_size, epochs=epochs, steps=steps, lr=lr, batch_size=batch_size, log=log,
                      loss=loss, freeze_bn=True)
    return q.eval(), record


def quantizer_count(model) -> int:
    """Number of NNCF quantizer modules in a quantized torch model."""
    from nncf.torch.quantization.layers import BaseQuantizer

    return sum(1 for m in model.modules() if isinstance(m, BaseQuantizer))


def set_export_mode(model, mode: str) -> int:
    """How NNCF quantizers trace when the model is exported: ``"qdq"`` gives ONNX
    QuantizeLinear/DequantizeLinear pairs (ONNX Runtime, TensorRT explicit quantization),
    ``"fake_quantize"`` gives FakeQuantize ops (what ``ov.convert_model`` turns into OpenVINO
    FakeQuantize). Returns the number of quantizers set (0 for a plain model, or without NNCF)."""
    try:
        from nncf.torch.quantization.layers import BaseQuantizer, QuantizerExportMode
    except ImportError:  # pragma: no cover - a plain model has no quantizers to switch
        return 0

    value = {"qdq": QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS,
             "fake_quantize": QuantizerExportMode.FAKE_QUANTIZE}[mode]
    n = 0
    for m in model.modules():
        if isinstance(m, BaseQuantizer):
            m.set_export_mode(value)
            n += 1
    return n


def asymmetric_quantizers(model) -> list[str]:
    """Names of NNCF quantizers with a zero point (asymmetric ranges), e.g. activations under
    the CPU preset; TensorRT's explicit quantization accepts only zero point 0."""
    from nncf.torch.quantization.layers import AsymmetricQuantizer

    return [name for name, m in model.named_modules() if isinstance(m, AsymmetricQuantizer)]


#: The NNCF enums its QAT config holds. A checkpoint stores them as {"__enum__": class, "value": v}:
#: plain data, loaded with ``weights_only=True`` (a pickled object could run code when loaded),
#: and only these classes are ever rebuilt from a name.
NNCF_ENUMS = ("nncf.common.quantization.structs.QuantizationScheme",)


def config_to_plain(obj):
    """NNCF's config as tensors, numbers, strings, lists, tuples and dicts only."""
    import enum

    if isinstance(obj, enum.Enum):
        name = f"{type(obj).__module__}.{type(obj).__qualname__}"
        if name not in NNCF_ENUMS:
            raise TypeError(f"NNCF config holds an enum {name} edgeseg does not know: add it to NNCF_ENUMS")
        return {"__enum__": name, "value": obj.value}
    if isinstance(obj, dict):
        return {k: config_to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(config_to_plain(v) for v in obj)
    if obj is None or type(obj) in (str, int, float, bool) or isinstance(obj, torch.Tensor):
        return obj
    raise TypeError(f"NNCF config holds a {type(obj).__module__}.{type(obj).__name__}, which a checkpoint "
                    f"cannot store as plain data: add a conversion in edgeseg/compress/quant.py")


def config_from_plain(obj):
    """The inverse of :func:`config_to_plain` (enums only from :data:`NNCF_ENUMS`)."""
    import importlib

    if isinstance(obj, dict):
        if set(obj) == {"__enum__", "value"}:
            name = str(obj["__enum__"])
            if name not in NNCF_ENUMS:
                raise CheckpointError(f"the checkpoint's NNCF config names {name!r}, which is not an NNCF enum "
                                      f"edgeseg restores: re-run `edgeseg compress`")
            module, _, cls = name.rpartition(".")
            return getattr(importlib.import_module(module), cls)(obj["value"])
        return {k: config_from_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(config_from_plain(v) for v in obj)
    return obj


def nncf_config(model) -> dict:
    """What :func:`restore` needs to rebuild the quantizers (``nncf.torch.get_config``), as plain data."""
    nncf()
    import importlib

    with captured():
        return config_to_plain(importlib.import_module("nncf.torch").get_config(model))


def restore(model, config: dict):
    """Re-insert NNCF quantizers into a plain ``model`` from a saved config (no data needed);
    load the quantized state dict afterwards."""
    nncf()
    import importlib

    with captured():
        return importlib.import_module("nncf.torch").load_from_config(model, config_from_plain(config))


# ----------------------------------------------------------------------------- sensitivity

def module_groups(model) -> list[str]:
    """Top-level child modules that hold parameters (the layer groups searched)."""
    return [name for name, mod in model.named_children() if any(True for _ in mod.parameters())]


def sensitivity(model, data: Data, *, img_size, target: str = "cpu", groups=None, log=None) -> dict:
    """PTQ with each module group kept in fp32 in turn; ``{"fp32", "int8", "groups": [...]}``
    with groups sorted by the mIoU recovered (most sensitive first)."""
    calib = data.calibration(img_size)
    fp32 = float(evaluate(model, data)["miou"] or 0.0)
    base = float(evaluate(ptq(model, calib, target=target), data)["miou"] or 0.0)
    rows = []
    for g in track(groups or module_groups(model), "sensitivity (one group in fp32 at a time)"):
        q = ptq(model, calib, target=target, ignore_patterns=[module_pattern(g)])
        m = float(evaluate(q, data)["miou"] or 0.0)
        rows.append({"group": g, "miou_with_group_fp32": m, "recovered": m - base})
        if log:
            log(f"  sensitivity: {g} in fp32 -> mIoU {m:.4f} ({m - base:+.4f})")
    rows.sort(key=lambda r: -r["recovered"])
    return {"fp32_miou": fp32, "int8_miou": base, "groups": rows}


def pick_sensitive(result: dict, max_drop: float) -> list[str]:
    """Smallest prefix of the ranked groups whose recovered mIoU brings int8 within ``max_drop``
    of fp32 (each group measured alone; effects are assumed additive)."""
    need = result["fp32_miou"] - result["int8_miou"] - max_drop
    picked, got = [], 0.0
    for r in result["groups"]:
        if need <= got:
            break
        if r["recovered"] <= 0:
            break
        picked.append(r["group"])
        got += r["recovered"]
    return picked
