"""Peak resident memory of the deployed runtime: a fresh process running the plain runner.

:func:`measure_peak_memory` runs the remote bench's runner (``Unit.runner_script``:
``edgeseg/formats/runner_core.py`` + the unit's ``plain.py``; Python, numpy and the runtime,
nothing of edgeseg or torch) in a new interpreter, in a temporary folder holding links to the
artifact's files, its manifest and one image of the model's size. It loads the artifact,
runs it N times and reports its ``VmHWM``: what the device holds for runtime, model and
buffers, the same figure ``bench --remote`` reports. The result names the modules that
process imported, so a test can check that torch was not among them.

A unit without a plain runner (TensorRT) falls back to this module's own entry point,
``python -m edgeseg.bench.memory ARTIFACT``, which loads edgeseg's Predictor (edgeseg and
torch included: its ``process`` says so).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
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
    """The fallback: edgeseg's Predictor in this process (edgeseg and torch imported)."""
    import numpy as np

    from edgeseg.formats import load_predictor

    baseline = _status_mb("VmRSS") or _maxrss_mb()
    pred = load_predictor(artifact, threads=threads)
    h, w = pred.input_size
    image = np.random.default_rng(0).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    for _ in range(max(1, runs)):
        pred.predict(image)
    peak = _status_mb("VmHWM")
    return {"peak_mb": peak if peak is not None else _maxrss_mb(), "baseline_mb": baseline,
            "runs": max(1, runs), "source": "VmHWM" if peak is not None else "ru_maxrss"}


def _plain_folder(artifact: Path, manifest: dict, script: str, folder: Path) -> None:
    """The remote bench's folder layout, here: links to the artifact's files, manifest, runner, one image."""
    import numpy as np

    for name in sorted(set(manifest["files"].values())):
        dst = folder / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to((artifact / name).resolve())
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "runner.py").write_text(script, encoding="utf-8")
    h, w = (int(v) for v in manifest["input"]["size"])
    image = np.random.default_rng(0).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    np.savez(folder / "inputs.npz", latency=image)


def _subprocess_json(cmd: list[str], artifact, timeout: float, cwd=None) -> dict:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise EdgesegError(f"memory measurement of '{artifact}' took over {timeout:.0f} s: use fewer runs") from exc
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    out = json.loads(lines[-1]) if lines else {}
    if p.returncode != 0 or not lines or out.get("error"):
        tail = out.get("message") or (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgesegError(f"memory measurement of '{artifact}' failed in a fresh process: {tail}")
    return out


def _plain_peak(artifact: Path, manifest: dict, script: str, runs: int, threads, timeout: float, python) -> dict:
    with tempfile.TemporaryDirectory(prefix="edgeseg-memory-") as tmp:
        _plain_folder(artifact, manifest, script, Path(tmp))
        cmd = [python, "runner.py", "--runs", str(max(1, runs)), "--warmup", "0", "--threads", str(int(threads or 0))]
        out = _subprocess_json(cmd, artifact, timeout, cwd=tmp)
    return {"peak_mb": out["peak_memory_mb"], "baseline_mb": out.get("baseline_mb"), "runs": out["runs"],
            "source": "VmHWM", "imported": out.get("imported"),
            "process": f"plain runner: Python, numpy and {manifest['runtime']} only (the code bench --remote runs)",
            "command": " ".join(["python", "runner.py", *cmd[2:]])}


def measure_peak_memory(artifact, *, runs: int = 5, threads: int | None = None, timeout: float = 600,
                        python: str | None = None) -> dict:
    """Peak resident memory (MB) of a fresh process that loads ``artifact`` and runs it ``runs`` times."""
    from edgeseg.formats import get_unit, read_manifest

    artifact = Path(artifact)
    manifest = read_manifest(artifact)
    unit = get_unit(manifest["runtime"])
    if unit.plain_module:
        return _plain_peak(artifact, manifest, unit.runner_script(), runs, threads, timeout, python or sys.executable)
    cmd = [python or sys.executable, "-m", "edgeseg.bench.memory", str(artifact), "--runs", str(int(runs))]
    if threads:
        cmd += ["--threads", str(int(threads))]
    out = _subprocess_json(cmd, artifact, timeout)
    out["process"] = f"edgeseg Predictor (edgeseg and torch imported): {manifest['runtime']} has no plain runner"
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
