"""Int8 for TFLite and the Coral Edge TPU with PyTorch 2 export quantization (PT2E).

NNCF's quantizers cannot go into a TFLite file: litert-torch converts PT2E graphs
(``torchao`` ``prepare_pt2e`` / ``convert_pt2e``) quantized by its own ``PT2EQuantizer``.
So ``edgeseg compress --target edgetpu`` quantizes with that quantizer, and the
checkpoint holds the very fake-quantized graph that ``edgeseg build --target coral``
converts: no calibration at build time, and the TFLite file computes what QAT trained.

The graph is the one :mod:`edgeseg.formats.litert.export` builds: NHWC input (litert-torch's
``to_channel_last_io``), the target's head option ``low_res_output``, the exact export
rewrites, then batch norm folded into the convolutions (torchao's ``_fuse_conv_bn_``,
exact in eval mode; the deployed int8 graph folds it too). Folding first means QAT
trains with frozen batch-norm statistics (as the NNCF path does) and that litert-torch's
QAT-only conv+bn annotators are not needed: they fail with torch 2.13 (they hand a plain
function to ``torch.export.export``), so :class:`FoldedBNQuantizer` leaves them out.

Weights: int8 symmetric per channel; activations: int8 per tensor (moving-average
min/max fake quantizers, calibrated on the calibration images, then trained with the
weights; frozen after training). The batch dimension of the graph is dynamic so that
fine-tuning runs on batches; height and width are static (the build size).

Saving: the checkpoint's ``state_dict`` is :class:`PT2EModel`'s (graph weights and
quantizer state) and ``quantization`` says how to rebuild the graph (``backend: pt2e``,
``input_size``, ``head``, ``per_channel``, ``rewrites``); :func:`restore` re-creates the
same prepared graph from the registry model and the state dict is loaded into it.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from edgeseg.errors import ConfigError, InputSizeError

BACKEND = "pt2e"


def _quantizer_class():
    from litert_torch.quantize import pt2e_quantizer as pq

    class FoldedBNQuantizer(pq.PT2EQuantizer):
        """litert-torch's quantizer for graphs whose batch norms are already folded."""

        STATIC_QAT_ONLY_OPS: list = []

    return FoldedBNQuantizer


def make_quantizer(per_channel: bool = True, is_qat: bool = True):
    from edgeseg.formats.litert.export import torch_modules

    _, pq, _, _ = torch_modules()
    return _quantizer_class()().set_global(pq.get_symmetric_quantization_config(is_per_channel=per_channel,
                                                                                is_qat=is_qat))


def head_for_target(extra: dict) -> dict:
    """The head options of a target profile (its ``extra``) that the quantized graph must be
    trained with (``low_res_output`` may be ``"auto"``; :func:`prepare` records what it applied)."""
    from edgeseg.formats.litert.export import low_res_mode

    extra = extra or {}
    return {"low_res_output": low_res_mode(extra.get("low_res_output", False))}


class PT2EModel(torch.nn.Module):
    """A prepared (fake-quantized) PT2E graph used like an edgeseg model: NCHW float in,
    NCHW logits at the input size out. Smaller inputs are zero-padded to the graph's
    static size and the logits cropped back; a low-resolution head is upsampled
    bilinearly (what the runtime does with ``output.size``)."""

    def __init__(self, graph, input_size, *, source, head: dict, per_channel: bool, rewrites: bool):
        super().__init__()
        self.graph = graph
        self.input_size = tuple(int(v) for v in input_size)
        # what checkpoints and the runtime read from a registry model
        self.model_name = source.model_name
        self.model_kwargs = dict(getattr(source, "model_kwargs", {}))
        self.num_classes = int(source.num_classes)
        self.size_divisor = int(source.size_divisor)
        self.head = dict(head)
        self.per_channel = bool(per_channel)
        self.rewrites = bool(rewrites)
        # layer widths of the float model (a pruned one differs from the registry's)
        self.float_shapes = {k: list(v.shape) for k, v in source.state_dict().items()}

    def train(self, mode: bool = True):
        # An exported graph cannot switch train/eval by module flags; batch norm is folded
        # and dropout stays off, so the graph is the same in both modes.
        self.training = bool(mode)
        return self

    def forward(self, x):
        h, w = x.shape[-2:]
        H, W = self.input_size
        if h > H or w > W:
            raise InputSizeError(f"input {h}x{w} is larger than the quantized graph's static size {H}x{W}")
        if (h, w) != (H, W):
            x = F.pad(x, (0, W - w, 0, H - h))
        y = self.graph(x.permute(0, 2, 3, 1).contiguous()).permute(0, 3, 1, 2)
        if tuple(y.shape[-2:]) != (H, W):
            y = F.interpolate(y, size=(H, W), mode="bilinear", align_corners=False)
        return y[..., :h, :w]

    def valid_size(self, size: int) -> int:
        from edgeseg.sizes import valid_size

        return valid_size(size, self.size_divisor)

    def check_input_size(self, h: int, w: int) -> None:
        if (int(h), int(w)) != self.input_size:
            H, W = self.input_size
            raise InputSizeError(f"this checkpoint was quantized for TFLite at a static {H}x{W} input "
                                 f"(PT2E graphs have fixed sizes): build it at {H}x{W}, or re-run "
                                 f"`edgeseg compress --target edgetpu` on a checkpoint of that size")

    def quantization_entry(self) -> dict:
        """What :func:`restore` needs; goes into the checkpoint's ``quantization``. The package
        versions are there because the prepared graph's layout comes from the quantizer's
        annotation: another torch / torchao / litert-torch may lay it out differently."""
        return {"backend": BACKEND, "input_size": list(self.input_size), "head": dict(self.head),
                "per_channel": self.per_channel, "rewrites": self.rewrites, "float_shapes": self.float_shapes,
                "versions": package_versions()}

    def set_observers(self, enabled: bool) -> None:
        """Observers on: quantizer ranges follow the data; off: ranges frozen."""
        from torchao.quantization.pt2e import disable_observer, enable_observer

        self.graph.apply(enable_observer if enabled else disable_observer)

    def converted(self):
        """The int8 graph (quantize/dequantize ops, ``convert_pt2e``) that litert-torch converts;
        NHWC input of batch 1."""
        from edgeseg.formats.litert.export import torch_modules

        *_, qpt2e = torch_modules()
        return qpt2e.convert_pt2e(copy.deepcopy(self.graph), fold_quantize=False)


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "torchao", "litert-torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def mismatch_hint(entry: dict) -> str:
    """Why a PT2E checkpoint's state dict may not fit the graph rebuilt here."""
    saved, here = entry.get("versions") or {}, package_versions()
    if not saved:
        return "; the checkpoint records no package versions: re-run `edgeseg compress --target edgetpu` here"
    diff = [f"{k} {saved.get(k)} -> {here.get(k)}" for k in here if saved.get(k) != here.get(k)]
    return ("; it was saved with other package versions (" + ", ".join(diff) + "): the quantized graph is "
            "laid out by the quantizer, so install those versions or re-run `edgeseg compress --target edgetpu`"
            if diff else "")


def prepare(model, input_size, *, head: dict | None = None, per_channel: bool = True,
            rewrites: bool = True) -> PT2EModel:
    """The fake-quantized PT2E graph of ``model`` (eval mode) at ``input_size``, with fresh
    (uncalibrated) quantizers. Deterministic: the same model class gives the same graph, so
    a saved state dict loads into it."""
    from edgeseg.native_logs import captured

    with captured():  # torchao / litert-torch / absl logs of imports, export and preparation
        return _prepare(model, input_size, head=head, per_channel=per_channel, rewrites=rewrites)


def _prepare(model, input_size, *, head, per_channel, rewrites) -> PT2EModel:
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    from edgeseg.formats.litert import export as tflite

    *_, qpt2e = tflite.torch_modules()
    h, w = (int(v) for v in input_size)
    module, _ = tflite.prepare_module(model.eval(), (h, w))
    # batch 2: a batch-1 example would specialise the batch dimension to 1
    examples = [torch.randn(2, h, w, 3, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    gm = tflite.export_graph(module, examples[0], dynamic_batch=True)
    if rewrites:
        tflite.apply_export_rewrites(module, gm, examples)
    gm, out_size = tflite.apply_low_res_output(gm, (head or {}).get("low_res_output", False))
    head = {"low_res_output": out_size is not None}  # what was applied ("auto" resolved)
    _fuse_conv_bn_(gm)
    with tflite.ordered_observer_creation():
        prepared = qpt2e.prepare_qat_pt2e(gm, make_quantizer(per_channel))
    move_exported_model_to_eval(prepared)  # dropout off; batch norm is already folded
    _unfuse_fake_quantizers(prepared)
    return PT2EModel(prepared, (h, w), source=model, head=head, per_channel=per_channel, rewrites=rewrites)


def _unfuse_fake_quantizers(graph) -> None:
    """Run litert-torch's ``FusedMovingAvgObsFakeQuantize`` modules as plain ``FakeQuantize``
    (their base class; same state). The fused kernel recomputes the scale with its own
    arithmetic, a few ulps off what ``convert_pt2e`` takes from the observer, which flips
    weights by one int8 step and made the .tflite differ from the trained graph by ~10 output
    steps on a small BiSeNet. The plain forward uses the observer's own ``calculate_qparams``:
    the fake-quantized graph and the converted one then compute the same int8 values."""
    from torchao.quantization.pt2e.fake_quantize import FakeQuantize, FusedMovingAvgObsFakeQuantize

    for m in graph.modules():
        if type(m) is FusedMovingAvgObsFakeQuantize:
            m.__class__ = FakeQuantize


@torch.no_grad()
def calibrate(qmodel: PT2EModel, calib) -> None:
    """Set the quantizer ranges from calibration images (1x3xHxW tensors)."""
    from edgeseg.progress import track

    qmodel.set_observers(True)
    for x in track(calib, "calibration (PT2E)"):
        qmodel(x)


def ptq(model, calib, *, input_size, head=None, per_channel: bool = True) -> PT2EModel:
    """Post-training quantization: the prepared graph, calibrated, quantizer ranges frozen."""
    q = prepare(model, input_size, head=head, per_channel=per_channel)
    calibrate(q, calib)
    q.set_observers(False)
    return q.eval()


def qat(model, data, *, img_size, calib_size=None, epochs: float = 1.0, steps: int = 0, lr: float = 1e-5,
        batch_size: int = 4, head=None, per_channel: bool = True, loss: str = "ce", log=None):
    """Quantization-aware training on the PT2E graph: calibrate, fine-tune weights with the
    fake quantizers in the loop (activation ranges follow as moving averages), then freeze
    the ranges. Trains at the graph's static size (``calib_size``, the build size): crops
    of ``img_size`` are padded to it. Returns ``(PT2EModel, fine_tune_record)``."""
    from edgeseg.compress.common import finetune

    size = tuple(calib_size or img_size)
    q = prepare(model, size, head=head, per_channel=per_channel)
    calibrate(q, data.calibration(size))
    record = finetune(q, data, img_size=img_size, epochs=epochs, steps=steps, lr=lr, batch_size=batch_size,
                      log=log, loss=loss)
    q.set_observers(False)
    record["backend"] = BACKEND
    return q.eval(), record


def restore(model, entry: dict) -> PT2EModel:
    """The prepared graph of a saved PT2E checkpoint (load its state dict afterwards)."""
    size = entry.get("input_size")
    if not size:
        raise ConfigError("the checkpoint's PT2E quantization entry has no input_size: re-run `edgeseg compress`")
    q = prepare(model, size, head=entry.get("head"), per_channel=bool(entry.get("per_channel", True)),
                rewrites=bool(entry.get("rewrites", True)))
    q.set_observers(False)
    return q.eval()


def to_tflite(qmodel: PT2EModel, path) -> "Path":
    """Convert the quantized graph to a full-integer TFLite file with litert-torch."""
    from pathlib import Path

    from edgeseg.formats.litert import export as tflite
    from edgeseg.native_logs import captured

    h, w = qmodel.input_size
    with captured():  # the converter's absl / MLIR / TFLite logs
        return tflite.convert_tflite(qmodel.converted(), torch.zeros(1, h, w, 3),
                                     make_quantizer(qmodel.per_channel), Path(path))


def tflite_summary(path, items, num_classes: int, ignore_index: int, classes=None, threads: int = 1) -> dict:
    """``ConfusionMatrix.summary`` of an int8 TFLite file from :func:`to_tflite` on
    ``items`` ((1x3xHxW image, 1xHxW mask) numpy pairs at the graph's size), run by LiteRT."""
    import cv2
    import numpy as np

    from edgeseg.formats.litert.export import interpreter_class
    from edgeseg.metrics import score
    from edgeseg.native_logs import captured
    from edgeseg.data.transforms import resize_hwc
    from edgeseg.formats.predictor import dequantize, quantize

    with captured():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
        it = interpreter_class()(model_path=str(path), num_threads=int(threads))
        it.allocate_tensors()
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    def predict(x):
        a = np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 2, 3, 1))
        scale, zp = inp["quantization"]
        if scale:
            a = quantize(a, {"scale": scale, "zero_point": zp}, np.dtype(inp["dtype"]).name)
        it.set_tensor(inp["index"], a.astype(inp["dtype"]))
        it.invoke()
        logits = dequantize(it.get_tensor(out["index"])[0], {"scale": out["quantization"][0],
                                                             "zero_point": out["quantization"][1]})
        logits = resize_hwc(logits, *np.shape(x)[-2:], cv2.INTER_LINEAR)  # a low-resolution head
        return logits.argmax(-1)[None]

    cm = score(items, predict, num_classes, ignore_index, label="val mIoU (litert)")
    return cm.summary(classes)
