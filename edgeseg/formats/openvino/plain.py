"""OpenVINO with nothing but openvino and numpy: how an artifact is compiled (shared with
:mod:`.runtime`), and the device half of a remote bench (appended to
:mod:`edgeseg.formats.runner_core`); it imports nothing from edgeseg."""

import os

import numpy as np

#: The CPU plugin's INFERENCE_PRECISION_HINT for each artifact precision. fp16 IRs hold fp16
#: weights that the CPU computes in f32; int8 IRs run their quantized ops in int8 whatever the
#: hint, and the rest in f32 (bf16 there was a few per cent faster for ENet on an AMX CPU,
#: tools/bench_cpu_precision.py: not worth results that differ from one CPU to the next).
CPU_INFERENCE_PRECISION = {"fp32": "f32", "fp16": "f32", "bf16": "bf16", "int8": "f32"}


def inference_precision(manifest):
    """The CPU inference precision an artifact asks for: the manifest's
    ``openvino.inference_precision`` (written by the build), else from its precision."""
    recorded = (manifest.get("openvino") or {}).get("inference_precision")
    return str(recorded) if recorded else CPU_INFERENCE_PRECISION.get(str(manifest.get("precision", "fp32")))


def compile_config(manifest, device, *, threads=None, performance_hint=None):
    """compile_model properties for an artifact on ``device``."""
    hint = performance_hint or (manifest.get("openvino") or {}).get("performance_hint", "LATENCY")
    config = {"PERFORMANCE_HINT": str(hint)}
    if device == "CPU":
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        precision = inference_precision(manifest)
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
    return config


class OvCall:
    kind = "openvino InferRequest.start_async() + wait()"

    def __init__(self, compiled):
        self.compiled, self.request = compiled, compiled.create_infer_request()

    def set_input(self, x):
        import openvino as ov

        self.x = np.ascontiguousarray(x)
        self.request.set_tensor(self.compiled.input(0), ov.Tensor(self.x))

    def run(self):
        self.request.start_async()
        self.request.wait()

    def output(self):
        return np.array(self.request.get_tensor(self.compiled.output(0)).data, copy=True)


def load(folder, manifest, threads):
    import openvino as ov

    core = ov.Core()
    device = str(manifest.get("device") or "CPU").upper()
    model = core.read_model(os.path.join(folder, manifest["files"]["model"]))
    return OvCall(core.compile_model(model, device, compile_config(manifest, device, threads=threads)))


def versions():
    import openvino as ov

    return {"openvino": ov.get_version()}
