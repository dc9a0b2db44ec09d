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
    call = predictor.model_call()
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


def measure_async(predictor, x: np.ndarray, *, runs: int = 50, threads: int | None = None) -> dict | None:
    """Throughput with parallel requests, or None when the runtime has no way to run them."""
    return predictor.throughput(x, runs=runs, threads=threads)


__all__ = ["stats", "measure_latency", "measure_async", "encode_image", "decode_image", "STAT_KEYS"]
