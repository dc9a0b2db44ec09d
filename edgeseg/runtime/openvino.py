"""OpenVINO runtime: an ``ov.Core`` compiled model and one InferRequest.

The device is the manifest's (``CPU``, ``NPU``...) unless ``device=`` overrides it; compile
properties are ``PERFORMANCE_HINT`` (``LATENCY`` unless the manifest's
``openvino.performance_hint`` says otherwise) and ``INFERENCE_NUM_THREADS`` when
``threads`` is given (CPU only).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from edgeseg.errors import ConfigError, require
from edgeseg.runtime.base import Predictor


class OpenVINOPredictor(Predictor):
    runtime = "openvino"

    def __init__(self, artifact_dir: Path, manifest: dict, *, threads=None, device=None):
        super().__init__(artifact_dir, manifest, threads=threads, device=device)
        ov = require("openvino", "openvino", "the OpenVINO runtime")
        self.core = ov.Core()
        dev = str(self.device or "CPU").upper()
        available = list(self.core.available_devices)
        if dev not in ("AUTO",) and not dev.startswith(("AUTO:", "HETERO:", "MULTI:")) \
                and not any(d.upper().startswith(dev) for d in available):
            raise ConfigError(f"OpenVINO device '{dev}' is not available here (devices: "
                              f"{', '.join(available) or 'none'}): run on a machine with one, or pass device='CPU'")
        self.device = dev
        config = {"PERFORMANCE_HINT": str((manifest.get("openvino") or {}).get("performance_hint", "LATENCY"))}
        if threads and dev == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self._config = config
        self._model = self.core.read_model(str(self.model_path()))
        self._compile(self._model)

    def _compile(self, model) -> None:
        self._model = model
        self.compiled = self.core.compile_model(model, self.device, self._config)
        self.request = self.compiled.create_infer_request()
        self._out = self.compiled.output(0)

    def fuse_argmax(self) -> bool:
        """Append the argmax over classes to the graph (OpenVINO ``TopK``, k=1, to uint8 ids):
        it then runs in the runtime's own threads, and the output copied out per frame is
        H x W bytes instead of C x H x W floats. For logits at the input size only (a
        low-resolution head is upsampled before the argmax)."""
        if not self._argmax_fusable():
            return False
        import openvino as ov
        import openvino.opset13 as ops

        model = self._model
        axis = 1 if self.output_layout == "NCHW" else 3
        result = model.get_results()[0]
        topk = ops.topk(result.input_value(0), ops.constant(np.int64(1)), axis, "max", "none", ov.Type.i32)
        ids = ops.convert(topk.output(1), ov.Type.u8)
        result.input(0).replace_source_output(ids.output(0))  # the model's output is now the ids
        model.validate_nodes_and_infer_types()
        self._compile(model)
        self.output_kind = "classes"
        return True

    def fuse_preprocessing(self) -> bool:
        """Let the graph take the padded uint8 RGB image (1 x H x W x 3) and do the float
        conversion, mean/std and NCHW layout itself (OpenVINO ``PrePostProcessor``): that
        work then runs in the runtime's threads instead of the caller's, and the input
        copied in is a quarter of the float tensor. Float NCHW inputs only."""
        if self.input_dtype != "float32" or self.input_layout != "NCHW" or self.fit != "pad":
            return False
        import openvino as ov
        from openvino.preprocess import PrePostProcessor

        ppp = PrePostProcessor(self._model)
        inp = ppp.input(0)
        inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        inp.model().set_layout(ov.Layout("NCHW"))
        # (v / 255 - mean) / std == (v - 255 mean) / (255 std)
        inp.preprocess().convert_element_type(ov.Type.f32) \
            .mean([255.0 * float(m) for m in self.mean.ravel()]) \
            .scale([255.0 * float(s) for s in self.std.ravel()])
        self._compile(ppp.build())
        self.raw_input = True
        return True

    shares_compiled_model = True

    def sibling(self) -> "OpenVINOPredictor":
        """A second infer request on this compiled model (and its fused steps): the idiomatic
        OpenVINO way to keep a model busy from two threads. With the LATENCY hint the
        requests queue on one stream with all its threads, so one request's pre-processing
        overlaps the other's inference without splitting the cores."""
        twin = copy.copy(self)
        twin.request = self.compiled.create_infer_request()
        return twin

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(x)})
        return np.array(self.request.get_tensor(self._out).data, copy=True)


PREDICTOR = OpenVINOPredictor
