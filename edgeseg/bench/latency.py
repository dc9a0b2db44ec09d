"""Latency and throughput of a loaded Predictor, after warm-up.

Two loops, both after ``warmup`` untimed iterations:

* **model only** -- the runtime's own inference call on an input already in place, as the
  runtimes' benchmark tools time it (OpenVINO: ``start_async()`` + ``wait()`` on a set input
  tensor, like ``benchmark_app -api sync``; ONNX Runtime: ``session.run``; LiteRT:
  ``interpreter.invoke()``; other runtimes: ``Predictor.infer``);
* **end to end** -- one camera/file frame to a class map: decode the encoded image
  (``cv2.imdecode`` + BGR->RGB), ``preprocess``, the model call (input copy in, output copy
  out included), ``postprocess``; each stage is timed too.

Throughput: ``sync`` is frames per second of the model-only calls (one request at a time);
``async`` uses parallel requests where the runtime has them (OpenVINO ``AsyncInferQueue``
on a THROUGHPUT-compiled model; ONNX Runtime: Python threads on sessions of one intra-op
thread each), else ``None``.
"""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from edgeseg.errors import ConfigError

STAT_KEYS = ("p50", "p90", "p99", "mean", "min", "max")


def stats(samples_ms) -> dict:
    """p50 / p90 / p99 (linear interpolation), mean, min, max and n of a list of milliseconds."""
    a = np.asarray(list(samples_ms), dtype=np.float64)
    if a.size == 0:
        raise ConfigError("no latency samples: --runs must be at least 1")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(a.mean()),
            "min": float(a.min()), "max": float(a.max()), "std": float(a.std()), "n": int(a.size)}


class ModelCall:
    """The runtime's bare inference call for a Predictor: ``set_input(x)``, ``run()``, ``output()``."""

    def __init__(self, predictor):
        self.p = predictor
        self.kind = "predictor.infer"
        self._x = None
        self._y = None
        rt = getattr(predictor, "runtime", "")
        if rt == "openvino" and hasattr(predictor, "request"):
            self.kind = "openvino InferRequest.start_async() + wait()"
        elif rt == "onnxruntime" and hasattr(predictor, "session"):
            self.kind = "onnxruntime InferenceSession.run()"
        elif rt == "litert" and hasattr(predictor, "interpreter"):
            self.kind = "litert Interpreter.invoke()"

    def set_input(self, x: np.ndarray) -> None:
        p = self.p
        x = np.ascontiguousarray(x)
        self._x = x
        if self.kind.startswith("openvino"):
            import openvino as ov

            p.request.set_tensor(p.compiled.input(0), ov.Tensor(x))
        elif self.kind.startswith("litert"):
            p.interpreter.set_tensor(p._in["index"], np.ascontiguousarray(x, dtype=p._in["dtype"]))

    def run(self) -> None:
        p = self.p
        if self.kind.startswith("openvino"):
            # start_async + wait skips infer()'s per-call wrapping of the outputs into a
            # Python dict, which is overhead the runtime's own benchmark_app never pays.
            p.request.start_async()
            p.request.wait()
        elif self.kind.startswith("onnxruntime"):
            self._y = p.session.run(None, {p._input_name: self._x})[0]
        elif self.kind.startswith("litert"):
            p.interpreter.invoke()
        else:
            self._y = p.infer(self._x)

    def output(self) -> np.ndarray:
        p = self.p
        if self.kind.startswith("openvino"):
            return np.array(p.request.get_tensor(p._out).data, copy=True)
        if self.kind.startswith("litert"):
            return np.array(p.interpreter.get_tensor(p._out["index"]), copy=True)
        return self._y


def encode_image(image_rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 always encodes PNG
        raise ConfigError("cannot encode the benchmark image as PNG")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def measure_latency(predictor, encoded: bytes, *, runs: int = 100, warmup: int = 10) -> dict:
    """Model-only and end-to-end latency (ms), per-stage p50s, sync throughput and the samples.

    Each loop shows a progress bar on a terminal (:func:`edgeseg.progress.track`); the bar
    advances between samples, outside the timed spans."""
    from edgeseg.progress import track

    if runs < 1 or warmup < 0:
        raise ConfigError(f"--runs must be >= 1 and --warmup >= 0 (got {runs}, {warmup})")
    call = ModelCall(predictor)
    image = decode_image(encoded)
    x, _ = predictor.preprocess(image)
    call.set_input(x)
    for _ in track(range(warmup), "latency: warm-up"):
        call.run()
    model = []
    for _ in track(range(runs), "latency: model only"):
        t0 = time.perf_counter()
        call.run()
        model.append((time.perf_counter() - t0) * 1e3)

    stages = {"decode": [], "pre": [], "model": [], "post": []}
    e2e = []
    for i in track(range(warmup + runs), "latency: end to end"):
        t0 = time.perf_counter()
        img = decode_image(encoded)
        t1 = time.perf_counter()
        x, meta = predictor.preprocess(img)
        t2 = time.perf_counter()
        call.set_input(x)
        call.run()
        y = call.output()
        t3 = time.perf_counter()
        predictor.postprocess(y, meta)
        t4 = time.perf_counter()
        if i >= warmup:
            e2e.append((t4 - t0) * 1e3)
            for k, a, b in (("decode", t0, t1), ("pre", t1, t2), ("model", t2, t3), ("post", t3, t4)):
                stages[k].append((b - a) * 1e3)
    return {
        "method": call.kind,
        "image_size": list(image.shape[:2]),
        "input_size": list(predictor.input_size),
        "runs": runs, "warmup": warmup,
        "latency_ms": stats(model),
        "end_to_end_ms": stats(e2e),
        "stages_p50_ms": {k: float(np.median(v)) for k, v in stages.items()},
        # from the timed calls alone, so the progress bar's updates between them do not count
        "sync_fps": len(model) / (sum(model) / 1e3) if sum(model) > 0 else None,
        "end_to_end_fps": len(e2e) / (sum(e2e) / 1e3) if e2e else None,
        "samples_ms": {"model": [round(v, 4) for v in model], "end_to_end": [round(v, 4) for v in e2e]},
    }


def _openvino_async(predictor, x: np.ndarray, n: int, threads: int | None) -> dict:
    import openvino as ov

    from edgeseg.runtime.openvino import compile_config

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


def _onnxruntime_async(predictor, x: np.ndarray, n: int, threads: int | None) -> dict:
    import os

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


def measure_async(predictor, x: np.ndarray, *, runs: int = 50, threads: int | None = None) -> dict | None:
    """Throughput with parallel requests, or None when the runtime has no way to run them."""
    rt = getattr(predictor, "runtime", "")
    if rt == "openvino" and hasattr(predictor, "core"):
        return _openvino_async(predictor, x, runs, threads)
    if rt == "onnxruntime" and hasattr(predictor, "session"):
        return _onnxruntime_async(predictor, x, runs, threads)
    return None


__all__ = ["stats", "measure_latency", "measure_async", "ModelCall", "encode_image", "decode_image", "STAT_KEYS"]
