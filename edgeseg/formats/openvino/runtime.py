"""OpenVINO runtime: an ``ov.Core`` compiled model and one InferRequest.

The device is the manifest's (``CPU``, ``NPU``...) unless ``device=`` overrides it; compile
properties (:func:`compile_config`) are ``PERFORMANCE_HINT`` (``LATENCY`` unless the
manifest's ``openvino.performance_hint`` says otherwise), ``INFERENCE_NUM_THREADS`` when
``threads`` is given, and on the CPU ``INFERENCE_PRECISION_HINT`` from the artifact's
precision (:data:`CPU_INFERENCE_PRECISION`): the CPU plugin otherwise runs f32 IRs in bf16
on CPUs with AMX or AVX-512 BF16, so an "fp32" artifact would not be fp32 there.
:meth:`OpenVINOPredictor.execution` says what the compiled model actually runs.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np

from edgeseg.errors import ConfigError, require
from edgeseg.formats.openvino.plain import CPU_INFERENCE_PRECISION, compile_config, inference_precision  # noqa: F401
from edgeseg.formats.predictor import ModelCall, Predictor

def cpu_supports_bf16(core=None) -> bool:
    """Whether OpenVINO's CPU plugin lists BF16 among its optimization capabilities."""
    core = core if core is not None else require("openvino", "openvino", "the OpenVINO runtime").Core()
    try:
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return False


def check_bf16(core=None, what: str = "a bf16 model") -> None:
    """ConfigError when this CPU cannot run bf16 (OpenVINO would silently run f32)."""
    if not cpu_supports_bf16(core):
        from edgeseg.machine import cpu_model

        raise ConfigError(f"{what} needs a CPU with bf16 support (AMX or AVX-512 BF16), and this one "
                          f"({cpu_model()}) has none: use --precision fp32 or int8 here, or run on such a CPU")


def compile_on_cpu(model, precision: str = "fp32", *, core=None, **properties):
    """``compile_model(model, "CPU")`` computing as a built artifact of ``precision`` would
    (f32 for fp32 and int8): for validation and timing outside a Predictor."""
    core = core if core is not None else require("openvino", "openvino", "the OpenVINO runtime").Core()
    config = {"INFERENCE_PRECISION_HINT": CPU_INFERENCE_PRECISION[precision], **properties}
    return core.compile_model(model, "CPU", config)


def compiled_precision(compiled) -> str | None:
    """The inference precision a compiled model runs (``f32``, ``bf16``, ``f16``), or None
    where the device does not say."""
    try:
        return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    except (RuntimeError, AttributeError):
        return None


class OpenVINOCall(ModelCall):
    """``start_async()`` + ``wait()`` on a set input tensor, like ``benchmark_app -api sync``:
    it skips ``infer()``'s per-call wrapping of the outputs into a Python dict, overhead the
    runtime's own benchmark tool never pays."""

    kind = "openvino InferRequest.start_async() + wait()"

    def set_input(self, x: np.ndarray) -> None:
        import openvino as ov

        self._x = np.ascontiguousarray(x)
        self.p.request.set_tensor(self.p.compiled.input(0), ov.Tensor(self._x))

    def run(self) -> None:
        self.p.request.start_async()
        self.p.request.wait()

    def output(self) -> np.ndarray:
        return np.array(self.p.request.get_tensor(self.p.compiled.output(0)).data, copy=True)


def _throughput(predictor, x: np.ndarray, n: int, threads: int | None) -> dict:
    import openvino as ov

    core = predictor.core
    config = compile_config(predictor.manifest, predictor.device, threads=threads, performance_hint="THROUGHPUT")
    compiled = core.compile_model(core.read_model(str(predictor.model_path())), predictor.device, config)
    jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(compiled, jobs)
    tensor = ov.Tensor(np.ascontiguousarray(x))
    for _ in range(jobs):  # warm-up: one per request
        queue.start_async({0: tensor})
    queue.wait_all()
    n = max(n, 2 * jobs)
    from edgeseg.progress import track

    t0 = time.perf_counter()
    for _ in track(range(n), f"throughput: {jobs} parallel requests"):
        queue.start_async({0: tensor})
    queue.wait_all()
    wall = time.perf_counter() - t0
    return {"fps": n / wall, "requests": jobs, "frames": n, "method": "openvino AsyncInferQueue (THROUGHPUT hint)"}


class OpenVINOPredictor(Predictor):
    runtime = "openvino"

    def __init__(self, artifact_dir: Path, manifest: dict, *, threads=None, device=None):
        super().__init__(artifact_dir, manifest, threads=threads, device=device)
        ov = require("openvino", "openvino", "the OpenVINO runtime")
        self.core = ov.Core()
        dev = str(self.device or "CPU").upper()
        available = list(self.core.available_devices)
        if dev not in ("AUTO",) and not dev.startswith(("AUTO:", "HETERO:", "MULTI:")) \
                and not any(d.upper().startswith(dev) for d in available):
            raise ConfigError(f"OpenVINO device '{dev}' is not available here (devices: "
                              f"{', '.join(available) or 'none'}): run on a machine with one, or pass device='CPU'")
        self.device = dev
        self._config = compile_config(manifest, dev, threads=threads)
        if self._config.get("INFERENCE_PRECISION_HINT") == "bf16":
            check_bf16(self.core, f"artifact '{artifact_dir}' (bf16)")
        self._model = self.core.read_model(str(self.model_path()))
        self._compile(self._model)

    def _compile(self, model) -> None:
        self._model = model
        self.compiled = self.core.compile_model(model, self.device, self._config)
        self.request = self.compiled.create_infer_request()
        self._out = self.compiled.output(0)

    def execution(self) -> dict:
        """What the compiled model runs: device and inference precision, as OpenVINO reports them."""
        return {"device": self.device, "inference_precision": compiled_precision(self.compiled)}

    def fuse_argmax(self) -> bool:
        """Append the argmax over classes to the graph (OpenVINO ``TopK``, k=1, to uint8 ids):
        it then runs in the runtime's own threads, and the output copied out per frame is
        H x W bytes instead of C x H x W floats. For logits at the input size only (a
        low-resolution head is upsampled before the argmax)."""
        if not self._argmax_fusable():
            return False
        import openvino as ov
        import openvino.opset13 as ops

        model = self._model
        axis = 1 if self.output_layout == "NCHW" else 3
        result = model.get_results()[0]
        topk = ops.topk(result.input_value(0), ops.constant(np.int64(1)), axis, "max", "none", ov.Type.i32)
        ids = ops.convert(topk.output(1), ov.Type.u8)
        result.input(0).replace_source_output(ids.output(0))  # the model's output is now the ids
        model.validate_nodes_and_infer_types()
        self._compile(model)
        self.output_kind = "classes"
        return True

    def fuse_preprocessing(self) -> bool:
        """Let the graph take the padded uint8 RGB image (1 x H x W x 3) and do the float
        conversion, mean/std and NCHW layout itself (OpenVINO ``PrePostProcessor``): that
        work then runs in the runtime's threads instead of the caller's, and the input
        copied in is a quarter of the float tensor. Float NCHW inputs only."""
        if self.input_dtype != "float32" or self.input_layout != "NCHW" or self.fit != "pad":
            return False
        import openvino as ov
        from openvino.preprocess import PrePostProcessor

        ppp = PrePostProcessor(self._model)
        inp = ppp.input(0)
        inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        inp.model().set_layout(ov.Layout("NCHW"))
        # (v / 255 - mean) / std == (v - 255 mean) / (255 std)
        inp.preprocess().convert_element_type(ov.Type.f32) \
            .mean([255.0 * float(m) for m in self.mean.ravel()]) \
            .scale([255.0 * float(s) for s in self.std.ravel()])
        self._compile(ppp.build())
        self.raw_input = True
        return True

    shares_compiled_model = True

    def sibling(self) -> "OpenVINOPredictor":
        """A second infer request on this compiled model (and its fused steps): the idiomatic
        OpenVINO way to keep a model busy from two threads. With the LATENCY hint the
        requests queue on one stream with all its threads, so one request's pre-processing
        overlaps the other's inference without splitting the cores."""
        twin = copy.copy(self)
        twin.request = self.compiled.create_infer_request()
        return twin

    def model_call(self) -> OpenVINOCall:
        return OpenVINOCall(self)

    def throughput(self, x: np.ndarray, *, runs: int = 50, threads: int | None = None) -> dict:
        """Parallel requests on a THROUGHPUT-compiled model (``AsyncInferQueue``)."""
        return _throughput(self, x, runs, threads)

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(x)})
        return np.array(self.request.get_tensor(self._out).data, copy=True)


PREDICTOR = OpenVINOPredictor
