"""Runtimes: one Predictor per runtime (onnxruntime, openvino, litert, tensorrt, torch),
same interface (see :mod:`edgeseg.runtime.base`). Backends are imported lazily."""

from edgeseg.runtime.base import Predictor, load_predictor, read_manifest

__all__ = ["Predictor", "load_predictor", "read_manifest"]
