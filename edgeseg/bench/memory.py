"""Peak resident memory of a fresh process that loads an artifact and runs it.

``python -m edgeseg.bench.memory ARTIFACT [--runs N] [--threads T]`` imports the runtime,
records the resident set (baseline), loads the artifact, runs N predictions on a synthetic
image of the model's input size, and prints one JSON line: ``peak_mb`` (VmHWM from
/proc/self/status; ru_maxrss where /proc is absent), ``baseline_mb`` (VmRSS after imports,
before the model), ``rss_mb`` (at the end). :func:`measure_peak_memory` runs it as a
subprocess, so the benchmark's own memory never counts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from edgeseg.errors import EdgesegError


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _maxrss_mb() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def _run(artifact: str, runs: int, threads: int | None) -> dict:
    import importlib

    import numpy as np

    from edgeseg.formats import load_predictor, read_manifest

    m = read_manifest(artifact)
    try:
        importlib.import_module(f"edgeseg.formats.{m['runtime']}")
    except ImportError:
        pass
    baseline = _status_mb("VmRSS") or _maxrss_mb()
    pred = load_predictor(artifact, threads=threads)
    h, w = pred.input_size
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    for _ in range(max(1, runs)):
        pred.predict(image)
    peak = _status_mb("VmHWM")
    return {"peak_mb": peak if peak is not None else _maxrss_mb(), "baseline_mb": baseline,
            "rss_mb": _status_mb("VmRSS"), "runs": max(1, runs), "source": "VmHWM" if peak is not None else "ru_maxrss"}


def measure_peak_memory(artifact, *, runs: int = 5, threads: int | None = None, timeout: float = 600) -> dict:
    """Run this module in a fresh interpreter on ``artifact``; its JSON result (MB)."""
    cmd = [sys.executable, "-m", "edgeseg.bench.memory", str(artifact), "--runs", str(int(runs))]
    if threads:
        cmd += ["--threads", str(int(threads))]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise EdgesegError(f"memory measurement of '{artifact}' took over {timeout:.0f} s: use fewer runs") from exc
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgesegError(f"memory measurement of '{artifact}' failed in a fresh process: {tail}")
    out = json.loads(lines[-1])
    out["command"] = " ".join(cmd[1:])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgeseg.bench.memory", description=__doc__.splitlines()[0])
    ap.add_argument("artifact")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    try:
        print(json.dumps(_run(a.artifact, a.runs, a.threads)))
    except EdgesegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
