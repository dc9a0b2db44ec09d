"""TensorRT (Jetson): a static ONNX file (fp32, or int8 with explicit symmetric Q/DQ) and
the trtexec command that builds the engine on the device. Export: :mod:`.export`;
runtime: :mod:`.runtime` (where TensorRT and a CUDA GPU are present)."""

from pathlib import Path

from edgeseg.formats.base import ParityProxy, Unit, guarded


class TensorRTUnit(Unit):
    name = "tensorrt"
    formats = ("onnx",)
    runtime_modules = ("tensorrt",)
    build_modules = ("onnx",)
    extra = "tensorrt"
    quantized_checkpoints = ("nncf",)
    distributions = ("tensorrt",)
    compress_presets = {"GPU": "jetson"}
    plain_module = None  # a plain TensorRT runner needs CUDA buffers on the device: not written yet
    keeps_layers_float = True  # no Q/DQ around the layers kept in float

    def rank_int8_layers(self, model, input_size, artifact_file, calib, work_dir):
        from edgeseg.formats.onnx import rank_artifact_layers

        return rank_artifact_layers(model, input_size, artifact_file, calib, work_dir, as_written=True)

    def available(self, profile) -> tuple[bool, str]:
        if self.missing(self.runtime_modules):
            return False, "tensorrt is not installed (it ships with JetPack on a Jetson)"
        try:
            import torch

            if not torch.cuda.is_available():
                return False, "no CUDA GPU here"
        except Exception:  # pragma: no cover
            return False, "no CUDA GPU here"
        return True, ""

    def parity_proxy(self, profile, reason: str, model_file: str):
        runtime = (profile.extra or {}).get("parity_proxy")
        if not runtime:
            return None
        device, where = None, "CPU"
        if runtime == "onnxruntime":  # the same ONNX on ONNX Runtime, on the GPU where its providers have one
            device, where = "cpu-qdq-reference", "CPU, Q/DQ computed as written, as TensorRT does"
            from edgeseg.formats.onnxruntime.runtime import available_providers

            if "TensorrtExecutionProvider" in available_providers():
                device, where = "tensorrt", "its TensorRT execution provider"
            elif "CUDAExecutionProvider" in available_providers():
                device, where = "cuda", "its CUDA execution provider"
        return ParityProxy(runtime, device, f"tensorrt is not available here ({reason}); parity ran the same "
                                            f"{Path(model_file).name} on {runtime} ({where}) as a proxy")

    def probe(self) -> dict:
        """TensorRT's version and the CUDA GPUs torch sees."""
        from edgeseg.machine import package_version

        out = {"tensorrt": package_version("tensorrt")}

        def gpus():
            import torch

            if not torch.cuda.is_available():
                return {"available": False, "torch_cuda": torch.version.cuda}
            return {"available": True, "torch_cuda": torch.version.cuda,
                    "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}

        out.update(guarded(gpus))
        out["summary"] = (f"cuda: {', '.join(out['devices']) if out.get('available') else 'no CUDA GPU'}; "
                          f"tensorrt {out.get('tensorrt') or 'not installed'}")
        return out


UNIT = TensorRTUnit()
