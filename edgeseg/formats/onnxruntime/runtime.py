"""ONNX Runtime Predictor (CPU by default; CUDA / TensorRT execution providers when asked
with ``device="cuda"`` / ``"tensorrt"`` and present)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from edgeseg.errors import ConfigError, require
from edgeseg.formats.predictor import ModelCall, Predictor

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    # the CPU provider with graph optimisations off: a Q/DQ model runs as written (dequantize, fp32
    # op, quantize), as TensorRT's explicit quantization computes it, without the CPU's int8
    # kernels (on AVX2 without VNNI they saturate: vpmaddubsw sums pairs into int16)
    "cpu-qdq-reference": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "gpu": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def available_providers() -> list[str]:
    ort = require("onnxruntime", None, "the ONNX Runtime runtime")
    return list(ort.get_available_providers())


class OnnxRuntimeCall(ModelCall):
    kind = "onnxruntime InferenceSession.run()"

    def run(self) -> None:
        self._y = self.p.session.run(None, {self.p.input_name: self._x})[0]


def _throughput(predictor, x: np.ndarray, n: int, threads: int | None) -> dict:
    import onnxruntime as ort

    workers = max(2, int(threads or os.cpu_count() or 2))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(predictor.model_path()), so, providers=predictor.providers)
    name = sess.get_inputs()[0].name
    n = max(n, 2 * workers)
    per = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
    for _ in range(workers):
        sess.run(None, {name: x})
    errors = []

    def work(k):
        try:
            for _ in range(k):
                sess.run(None, {name: x})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(k,)) for k in per]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return {"fps": n / wall, "requests": workers, "frames": n,
            "method": f"onnxruntime: {workers} threads on one session (1 intra-op thread each)"}


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
        if not dev.startswith("cpu") and providers == ["CPUExecutionProvider"]:
            raise ConfigError(f"onnxruntime has no {PROVIDERS[dev][0]} here (providers: {', '.join(sorted(have))}): "
                              f"install onnxruntime-gpu or use device cpu")
        so = ort.SessionOptions()
        so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if dev == "cpu-qdq-reference"
                                       else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        self._options, self._providers = so, providers
        self.session = ort.InferenceSession(str(self.model_path()), so, providers=providers)
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name

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

    def model_call(self) -> OnnxRuntimeCall:
        return OnnxRuntimeCall(self)

    def throughput(self, x: np.ndarray, *, runs: int = 50, threads: int | None = None) -> dict:
        """Python threads on one session of one intra-op thread each."""
        return _throughput(self, x, runs, threads)

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


def file_latency(onnx_path, input_size, *, runs: int, warmup: int, threads: int) -> dict:
    """Median latency of an ONNX file on ONNX Runtime's CPU provider, batch 1."""
    from edgeseg.formats.base import median_latency
    from edgeseg.native_logs import captured

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    with captured():
        sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, *input_size)).astype(np.float32)
    name = sess.get_inputs()[0].name
    return median_latency(lambda: sess.run(None, {name: x}), runs, warmup, "latency: onnxruntime-cpu")


PREDICTOR = OnnxRuntimePredictor
