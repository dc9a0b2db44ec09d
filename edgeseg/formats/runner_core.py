"""The device side of a remote bench: this file, followed by a format unit's ``plain.py``, is
the one self-contained script ``edgeseg bench --remote`` copies to the device. It needs only
Python 3, numpy and the runtime there (neither edgeseg nor torch).

It reads ``manifest.json`` and ``inputs.npz`` (inputs already pre-processed into the model's
layout, dtype and size on the user's machine) in its folder, times the runtime's bare call
as a local bench does (warm-up, then timed runs), runs every image of ``inputs.npz`` and
writes their class maps (argmax on the device) to ``outputs.npz``, and prints one JSON line:
latency, peak memory, the device's machine info and runtime versions. A runtime that is
missing is a JSON error line and exit code 3.

The unit's ``plain.py`` defines ``load(folder, manifest, threads)`` (an object with
``set_input(x)``, ``run()``, ``output()``) and ``versions()``.
"""

import json
import os
import platform
import sys
import time

import numpy as np

EXIT_MISSING = 3


def _stats(samples):
    a = np.asarray(samples, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(a.mean()),
            "min": float(a.min()), "max": float(a.max()), "std": float(a.std()), "n": int(a.size)}


def _status_mb(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine(threads):
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu": _cpu_model(), "arch": platform.machine(), "logical_cores": os.cpu_count(), "threads": threads,
            "load_average": load, "os": platform.platform(), "python": platform.python_version(),
            "hostname": platform.node()}


def _argmax(y, manifest):
    out = manifest.get("output") or {}
    y = np.asarray(y)
    if out.get("kind") == "classes":
        return np.squeeze(y).astype(np.uint8)
    y = y[0] if y.ndim == 4 else y
    axis = 2 if out.get("layout") == "NHWC" else 0
    return y.argmax(axis).astype(np.uint8)  # integer logits: the scale is positive, the argmax the same


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    opts = {"--runs": "100", "--warmup": "10", "--threads": "0"}
    for i in range(0, len(args) - 1, 2):
        opts[args[i]] = args[i + 1]
    runs, warmup, threads = int(opts["--runs"]), int(opts["--warmup"]), int(opts["--threads"]) or None
    folder = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    try:
        call = load(folder, manifest, threads)  # noqa: F821 - defined by the unit's plain.py below
        runtime_versions = versions()  # noqa: F821
    except ImportError as exc:
        print(json.dumps({"error": "missing", "module": getattr(exc, "name", None) or str(exc),
                          "message": str(exc).splitlines()[0] if str(exc) else ""}))
        return EXIT_MISSING
    inputs = np.load(os.path.join(folder, "inputs.npz"))
    baseline = _status_mb("VmRSS")
    call.set_input(inputs["latency"])
    for _ in range(warmup):
        call.run()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call.run()
        samples.append((time.perf_counter() - t0) * 1e3)
    # the peak before the scored images are loaded: the runtime and the model, as a local bench measures it
    result = {"latency_ms": _stats(samples), "runs": runs, "warmup": warmup, "peak_memory_mb": _status_mb("VmHWM"),
              "method": getattr(call, "kind", "runtime call"), "samples_ms": [round(v, 4) for v in samples]}
    if "images" in inputs.files:
        maps = []
        for x in inputs["images"]:
            call.set_input(x[None])
            call.run()
            maps.append(_argmax(call.output(), manifest))
        np.savez_compressed(os.path.join(folder, "outputs.npz"), classes=np.stack(maps))
        result["images"] = len(maps)
    result.update(baseline_mb=baseline, machine=_machine(threads),
                  runtime_versions={**runtime_versions, "numpy": np.__version__})
    print(json.dumps(result))
    return 0
