"""TensorRT Predictor: builds (or loads the cached) engine from the artifact's ONNX and runs it.

Needs the ``tensorrt`` Python package (JetPack on a Jetson; ``pip install tensorrt`` on
x86 with an NVIDIA GPU) and a CUDA device; buffers go through torch CUDA tensors, so no
pycuda is needed. The engine is cached as ``model.<precision>.engine`` beside the ONNX
(or in ``$EDGESEG_ENGINE_CACHE``) -- engines are specific to the GPU and TensorRT version.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeseg.errors import ConfigError, EdgesegError, require
from edgeseg.formats.predictor import Predictor


def build_engine(onnx_path: Path, precision: str, workspace_mb: int = 1024) -> bytes:
    """Serialized engine for ``onnx_path`` (``precision`` fp32 | fp16 | int8 with Q/DQ)."""
    trt = require("tensorrt", "tensorrt", "the TensorRT runtime")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # removed (default) in TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgesegError(f"TensorRT cannot parse '{onnx_path}': {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit Q/DQ scales from the graph
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise EdgesegError(f"TensorRT failed to build an engine from '{onnx_path}' ({precision})")
    return bytes(engine)


class TensorRTPredictor(Predictor):
    runtime = "tensorrt"

    def __init__(self, artifact_dir, manifest, *, threads=None, device=None):
        super().__init__(artifact_dir, manifest, threads=threads, device=device)
        trt = require("tensorrt", "tensorrt", "the TensorRT runtime")
        torch = require("torch", None, "TensorRT buffers")
        if not torch.cuda.is_available():
            raise ConfigError("the TensorRT runtime needs an NVIDIA GPU and none is visible here: "
                              "run the artifact on the Jetson, or run its ONNX with load_predictor(dir, runtime='onnxruntime')")
        self.torch = torch
        self.cuda = torch.device("cuda")
        precision = manifest.get("precision", "fp32")
        onnx_path = self.model_path()
        cache_dir = Path(os.environ.get("EDGESEG_ENGINE_CACHE", onnx_path.parent))
        engine_path = cache_dir / f"{onnx_path.stem}.{precision}.engine"
        if engine_path.is_file():
            blob = engine_path.read_bytes()
        else:
            blob = build_engine(onnx_path, precision)
            try:
                cache_dir.mkdir(parents=True, exist_ok=True)
                engine_path.write_bytes(blob)
            except OSError:
                pass  # read-only artifact: keep the engine in memory only
        self.engine_path = engine_path
        self.runtime_obj = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime_obj.deserialize_cuda_engine(blob)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.stream = torch.cuda.Stream()
        self._out = {}
        for n in self.outputs:
            shape = tuple(self.context.get_tensor_shape(n))
            self._out[n] = torch.empty(shape, dtype=torch.float32, device=self.cuda)

    def infer(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        xin = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.cuda)
        self.context.set_tensor_address(self.inputs[0], xin.data_ptr())
        for n, t in self._out.items():
            self.context.set_tensor_address(n, t.data_ptr())
        with torch.cuda.stream(self.stream):
            self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return self._out[self.outputs[0]].cpu().numpy()


PREDICTOR = TensorRTPredictor
