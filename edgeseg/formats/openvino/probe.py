"""A short measured probe: does a CPU precision run faster or slower than f32 here?

A CPU that runs bf16 (AMX, or AVX-512 BF16 without AMX) is not always faster in it: without
AMX OpenVINO's bf16 was the slowest path for every model measured (issue 34). "Runs" is not
"use it", so doctor, targets and build ask this probe: a small conv stack (about 4 ms in f32 on
2 cores) compiled in f32 and in the precision's inference hint, timed alternately.
"""

from __future__ import annotations

import time

import numpy as np

#: the probe network's input (N, C, H, W) and its depth
SHAPE, LAYERS = (1, 32, 48, 48), 4


def probe_model():
    """Conv 3x3 + ReLU, LAYERS times, on SHAPE, with fixed random weights."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter(list(SHAPE), np.float32, name="x")
    y = x
    for _ in range(LAYERS):
        w = ops.constant((rng.standard_normal((SHAPE[1], SHAPE[1], 3, 3)) * 0.05).astype(np.float32))
        y = ops.relu(ops.convolution(y, w, [1, 1], [1, 1], [1, 1], [1, 1]))
    return ov.Model([y], [x], "edgeseg-precision-probe")


def _request(core, model, hint: str, threads: int | None):
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = core.compile_model(model, "CPU", config)
    req = compiled.create_infer_request()
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    req.set_tensor(compiled.input(0), ov.Tensor(x))
    ran_as = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return req, ran_as


def _once(req) -> float:
    t0 = time.perf_counter()
    req.start_async()
    req.wait()
    return (time.perf_counter() - t0) * 1e3


def measure(hint: str, *, threads: int | None = None, runs: int = 15, warmup: int = 3) -> dict:
    """Median ms of the probe in f32 and in ``hint`` (``bf16``, ``f16``), runs interleaved so that
    both see the same load; ``{hint, ran_as, ms, fp32_ms, ratio, runs, threads}``."""
    import openvino as ov

    core, model = ov.Core(), probe_model()
    base, _ = _request(core, model, "f32", threads)
    other, ran_as = _request(core, model, hint, threads)
    for _ in range(warmup):
        _once(base), _once(other)
    a, b = [], []
    for _ in range(runs):
        a.append(_once(base))
        b.append(_once(other))
    fp32_ms, ms = float(np.median(a)), float(np.median(b))
    return {"hint": hint, "ran_as": ran_as, "ms": ms, "fp32_ms": fp32_ms, "ratio": ms / fp32_ms, "runs": runs,
            "threads": threads, "network": f"{LAYERS} x conv3x3 {SHAPE[1]}ch + ReLU on {SHAPE[2]}x{SHAPE[3]}"}
