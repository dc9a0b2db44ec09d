"""LiteRT (TFLite) runtime: ``ai_edge_litert`` Interpreter (fallback: ``tflite_runtime``).

On a Coral device the Edge TPU delegate is loaded when its library is present
(``load_delegate('libedgetpu.so.1')``; ``edgetpu.dll`` / ``libedgetpu.1.dylib`` elsewhere)
and the artifact holds a compiled ``*_edgetpu.tflite`` (``files.edgetpu_model``); otherwise
the plain int8 model runs on the CPU (XNNPACK) with ``num_threads``. ``device="cpu"``
forces the CPU; ``device="edgetpu"`` requires the delegate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.errors import ConfigError, require
from edgeseg.formats.litert.plain import edgetpu_delegate, interpreter
from edgeseg.formats.predictor import ModelCall, Predictor


def litert():
    """(Interpreter, load_delegate); a missing interpreter names the extra that installs one."""
    try:
        return interpreter()
    except ImportError:
        require("ai_edge_litert", "tflite", "the LiteRT runtime")
        raise


class LiteRTCall(ModelCall):
    kind = "litert Interpreter.invoke()"

    def set_input(self, x: np.ndarray) -> None:
        p = self.p
        p.interpreter.set_tensor(p.input_detail["index"], np.ascontiguousarray(x, dtype=p.input_detail["dtype"]))

    def run(self) -> None:
        self.p.interpreter.invoke()

    def output(self) -> np.ndarray:
        return np.array(self.p.interpreter.get_tensor(self.p.output_detail["index"]), copy=True)


class LiteRTPredictor(Predictor):
    runtime = "litert"

    def __init__(self, artifact_dir: Path, manifest: dict, *, threads=None, device=None):
        super().__init__(artifact_dir, manifest, threads=threads, device=device)
        Interpreter, load_delegate = litert()
        want = str(self.device or "cpu").lower()
        files = manifest["files"]
        delegate = None
        path = self.model_path()
        if want in ("edgetpu", "tpu") and "edgetpu_model" in files:
            delegate = edgetpu_delegate(load_delegate)
            if delegate is not None:
                path = self.model_path("edgetpu_model")
        if want in ("edgetpu", "tpu") and delegate is None and str(device or "").lower() in ("edgetpu", "tpu"):
            raise ConfigError("device 'edgetpu' asked for, but the Edge TPU delegate (libedgetpu) cannot be loaded "
                              "or the artifact has no compiled *_edgetpu.tflite: run on a Coral device with the "
                              "Edge TPU runtime, after edgetpu_compiler")
        self.delegated = delegate is not None
        self.device = "edgetpu" if self.delegated else "cpu"
        kwargs = {"model_path": str(path)}
        if delegate is not None:
            kwargs["experimental_delegates"] = [delegate]
        if threads:
            kwargs["num_threads"] = int(threads)
        self.interpreter = Interpreter(**kwargs)
        self.interpreter.allocate_tensors()
        self.input_detail = self.interpreter.get_input_details()[0]
        self.output_detail = self.interpreter.get_output_details()[0]

    def model_call(self) -> LiteRTCall:
        return LiteRTCall(self)

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input_detail["index"], np.ascontiguousarray(x, dtype=self.input_detail["dtype"]))
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self.output_detail["index"]), copy=True)


def file_latency(path, *, runs: int, warmup: int, threads: int) -> dict:
    """Median latency of a TFLite file on LiteRT's CPU interpreter (XNNPACK), batch 1."""
    from edgeseg.formats.base import median_latency
    from edgeseg.formats.litert.export import interpreter_class
    from edgeseg.native_logs import captured

    with captured():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
        it = interpreter_class()(model_path=str(path), num_threads=int(threads))
        it.allocate_tensors()
    inp = it.get_input_details()[0]
    x = np.random.default_rng(0).integers(-128, 127, inp["shape"]).astype(inp["dtype"])
    it.set_tensor(inp["index"], x)
    return median_latency(it.invoke, runs, warmup, "latency: litert-cpu")


PREDICTOR = LiteRTPredictor
