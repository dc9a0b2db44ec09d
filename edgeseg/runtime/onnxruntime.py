"""ONNX Runtime Predictor (CPU by default; CUDA / TensorRT execution providers when asked
with ``device="cuda"`` / ``"tensorrt"`` and present)."""

from __future__ import annotations

import numpy as np

from edgeseg.errors import ConfigError, require
from edgeseg.runtime.base import Predictor

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "gpu": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def available_providers() -> list[str]:
    ort = require("onnxruntime", None, "the ONNX Runtime runtime")
    return list(ort.get_available_providers())


class OnnxRuntimePredictor(Predictor):
    runtime = "onnxruntime"

    def __init__(self, artifact_dir, manifest, *, threads=None, device=None):
        super().__init__(artifact_dir, manifest, threads=threads, device=device)
        ort = require("onnxruntime", None, "the ONNX Runtime runtime")
        dev = str(device or "cpu").lower()
        if dev not in PROVIDERS:
            raise ConfigError(f"onnxruntime device '{device}' is not one of {', '.join(PROVIDERS)}")
        have = set(ort.get_available_providers())
        providers = [p for p in PROVIDERS[dev] if p in have]
        if dev != "cpu" and providers == ["CPUExecutionProvider"]:
            raise ConfigError(f"onnxruntime has no {PROVIDERS[dev][0]} here (providers: {', '.join(sorted(have))}): "
                              f"install onnxruntime-gpu or use device cpu")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        self._options, self._providers = so, providers
        self.session = ort.InferenceSession(str(self.model_path()), so, providers=providers)
        self.providers = self.session.get_providers()
        self._input_name = self.session.get_inputs()[0].name

    def execution(self) -> dict:
        # ONNX Runtime computes a float model in the graph's own types: the CPU provider never downcasts.
        return {"device": self.device or "cpu", "providers": list(self.providers), "inference_precision": None}

    def fuse_argmax(self) -> bool:
        """Append ``ArgMax`` over classes and a ``Cast`` to uint8 to the ONNX graph (a new
        session from the edited model): the argmax runs in ONNX Runtime's threads and the
        output is H x W bytes. Needs the ``onnx`` package (returns False without it)."""
        if not self._argmax_fusable():
            return False
        try:
            import onnx
            from onnx import helper
        except ImportError:
            return False
        import onnxruntime as ort

        model = onnx.load(str(self.model_path()))
        graph = model.graph
        logits = graph.output[0].name
        axis = 1 if self.output_layout == "NCHW" else 3
        graph.node.extend([
            helper.make_node("ArgMax", [logits], ["edgeseg_argmax"], axis=axis, keepdims=0),
            helper.make_node("Cast", ["edgeseg_argmax"], ["edgeseg_classes"], to=onnx.TensorProto.UINT8)])
        del graph.output[:]
        graph.output.append(helper.make_tensor_value_info("edgeseg_classes", onnx.TensorProto.UINT8, None))
        self.session = ort.InferenceSession(model.SerializeToString(), self._options, providers=self._providers)
        self.output_kind = "classes"
        return True

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input_name: x})[0]


PREDICTOR = OnnxRuntimePredictor
