"""Exporters: one module per format (onnx, openvino, tflite, tensorrt), same interface.

See :mod:`edgeseg.export.base` for the contract. Backends are imported lazily.
"""

from edgeseg.export.base import BuildError, ExportResult, export_step, get_exporter

__all__ = ["BuildError", "ExportResult", "export_step", "get_exporter"]
