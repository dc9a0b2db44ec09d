"""ONNX Runtime: an ONNX file (fp32, or int8 QDQ from ONNX Runtime's static PTQ) on the CPU
execution provider. Export: :mod:`edgeseg.formats.onnx`; runtime: :mod:`.runtime`."""

import importlib.util

from edgeseg.formats.base import Unit, guarded


class OnnxRuntimeUnit(Unit):
    name = "onnxruntime"
    formats = ("onnx",)
    runtime_modules = ("onnxruntime",)
    build_modules = ("onnx", "onnxruntime")
    extra = None  # core dependencies
    quantized_checkpoints = ("nncf",)  # an NNCF QAT checkpoint exports as QDQ
    distributions = ("onnx", "onnxruntime", "onnxscript")
    compress_presets = {"CPU": "cpu"}
    export_module = "edgeseg.formats.onnx"
    keeps_layers_float = True  # quantize_static's nodes_to_exclude

    def rank_int8_layers(self, model, input_size, artifact_file, calib, work_dir):
        from edgeseg.formats.onnx import rank_artifact_layers

        return rank_artifact_layers(model, input_size, artifact_file, calib, work_dir)

    def probe(self) -> dict:
        """ONNX Runtime's version and execution providers."""
        if importlib.util.find_spec("onnxruntime") is None:
            return {"installed": False, "install": "pip install onnxruntime (a core dependency: reinstall edgeseg)",
                    "summary": "not installed"}

        def providers():
            import onnxruntime as ort

            have = list(ort.get_available_providers())
            return {"installed": True, "version": ort.__version__, "providers": have, "summary": ", ".join(have)}

        return guarded(providers)


UNIT = OnnxRuntimeUnit()
