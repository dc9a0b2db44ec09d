"""``edgeseg build``: a checkpoint -> a verified artifact folder for one target.

Flow: load the model and the target profile, check the precision and input size, gather
calibration images, export in a temporary folder beside ``out`` (one module per format,
chosen by the profile), write ``manifest.json``, run the artifact in its real runtime and
compare it with the PyTorch fp32 model (``parity.json``), then rename the folder to
``out``. A failed step or parity check leaves nothing at ``out`` and no temporary folder.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
from pathlib import Path

from edgeseg.runtime.base import FORMAT_VERSION, MANIFEST

TOOL_PACKAGES = ("edgeseg", "torch", "numpy", "onnx", "onnxruntime", "onnxscript", "openvino", "nncf",
                 "litert-torch", "ai-edge-litert", "tflite-runtime", "tensorrt")


def tool_versions() -> dict:
    """Versions of the installed tools that matter for an artifact."""
    out = {}
    for pkg in TOOL_PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _merge(base: dict, extra: dict) -> dict:
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def make_manifest(*, model, info, profile, precision: str, input_size, result=None, source: dict | None = None,
                  quantization: dict | None = None, build_seconds: float | None = None,
                  compiler: dict | None = None, parity: dict | None = None, files: dict | None = None,
                  extra: dict | None = None) -> dict:
    """The manifest of an artifact; ``result.details`` (an ExportResult) is merged in last.

    Keys: format_version, model, target, format, runtime, device, precision, classes,
    colors, ignore_index, mean, std, input, output, files, source, quantization, tools,
    build_time, build_seconds, compiler, parity.
    """
    h, w = (int(v) for v in input_size)
    layout = profile.layout
    m = {
        "format_version": FORMAT_VERSION,
        "model": {"name": getattr(model, "model_name", type(model).__name__),
                  "num_classes": int(model.num_classes),
                  "kwargs": dict(getattr(model, "model_kwargs", {}))},
        "target": profile.name,
        "format": profile.format,
        "runtime": profile.runtime,
        "device": profile.device,
        "precision": precision,
        "dataset": info.name,
        "classes": list(info.classes),
        "colors": [list(c) for c in info.colors],
        "ignore_index": int(info.ignore_index),
        "mean": list(info.mean),
        "std": list(info.std),
        "input": {"name": "input", "size": [h, w], "layout": layout,
                  "dtype": profile.input_dtype_for(precision), "quant": None, "fit": "pad"},
        "output": {"name": "logits", "layout": layout, "kind": "logits", "dtype": "float32", "quant": None,
                   "size": [h, w], "num_classes": int(model.num_classes)},
        "files": dict(files or {}),
        "source": source or {},
        "quantization": quantization,
        "tools": tool_versions(),
        "build_time": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "build_seconds": build_seconds,
        "compiler": compiler,
        "parity": parity,
    }
    if result is not None:
        if "model" not in m["files"]:
            m["files"]["model"] = Path(result.model_file).name
        _merge(m, result.details)
    _merge(m, extra or {})
    return m


def write_manifest(artifact_dir, manifest: dict) -> Path:
    from edgeseg.train.checkpoint import atomic_write_text

    path = Path(artifact_dir) / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=2, default=str) + "\n")
    return path
