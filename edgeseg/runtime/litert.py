"""LiteRT (TFLite) runtime: ``ai_edge_litert`` Interpreter (fallback: ``tflite_runtime``).

On a Coral device the Edge TPU delegate is loaded when its library is present
(``load_delegate('libedgetpu.so.1')``; ``edgetpu.dll`` / ``libedgetpu.1.dylib`` elsewhere)
and the artifact holds a compiled ``*_edgetpu.tflite`` (``files.edgetpu_model``); otherwise
the plain int8 model runs on the CPU (XNNPACK) with ``num_threads``. ``device="cpu"``
forces the CPU; ``device="edgetpu"`` requires the delegate.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from edgeseg.errors import ConfigError, require
from edgeseg.runtime.base import Predictor

EDGETPU_LIBS = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}


def _litert():
    """(Interpreter, load_delegate) from ai_edge_litert, else tflite_runtime."""
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter, load_delegate
        except ImportError:
            require("ai_edge_litert", "tflite", "the LiteRT runtime")
            raise
    return Interpreter, load_delegate


def edgetpu_delegate(load_delegate):
    """The Edge TPU delegate, or None when its library cannot be loaded here."""
    lib = EDGETPU_LIBS.get(platform.system(), "libedgetpu.so.1")
    try:
        return load_delegate(lib)
    except (ValueError, OSError, RuntimeError):
        return None


class LiteRTPredictor(Predictor):
    runtime = "litert"

    def __init__(self, artifact_dir: Path, manifest: dict, *, threads=None, device=None):
        super().__init__(artifact_dir, manifest, threads=threads, device=device)
        Interpreter, load_delegate = _litert()
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
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self._in["index"], np.ascontiguousarray(x, dtype=self._in["dtype"]))
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self._out["index"]), copy=True)


PREDICTOR = LiteRTPredictor
