"""The exporter contract, the wrapper around every export step, and the exporter lookup.

Every module ``edgeseg.export.<name>`` exposes::

    export(model, info, *, input_size: tuple[int, int], precision: str, out_dir: Path,
           profile: TargetProfile, calib: list[np.ndarray] | None) -> ExportResult

``model`` is a SegmentationModel in eval mode on CPU in fp32; ``calib`` is a list of
normalised float32 NCHW arrays (1x3xHxW, padded like the runtime pads), or None when no
calibration data was given. ``ExportResult.details`` is merged into the manifest
(e.g. ``{"input": {"quant": {...}, "layout": "NHWC"}, "output": {...}, "quantization": {...}}``).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeseg.errors import ConfigError, EdgesegError

log = logging.getLogger("edgeseg.export")

INT8_NEEDS_DATA = "int8 needs calibration data: pass --data DIR (or a QAT checkpoint)"


class BuildError(EdgesegError):
    """An export, compile or parity step that failed; nothing was written at the output."""


@dataclass
class ExportResult:
    #: the file the runtime loads (model.onnx, model.xml, model_int8.tflite...)
    model_file: Path
    #: every file the artifact needs (model_file included), all inside out_dir
    files: list[Path] = field(default_factory=list)
    precision: str = "fp32"
    #: merged into the manifest (input/output overrides, quantization, compiler...)
    details: dict = field(default_factory=dict)


def file_size_mb(path: Path) -> float:
    return Path(path).stat().st_size / 1e6


@contextlib.contextmanager
def export_step(name: str, output: Path | str | None = None, *, timings: dict | None = None):
    """Time a step, check its output file exists and is non-empty, log its size, and
    re-raise any non-edgeseg exception as ``BuildError("<name> failed: ...")``.

    Usage::

        with export_step("ONNX export", out_dir / "model.onnx"):
            torch.onnx.export(...)

    ``output`` may also be set later through the yielded dict: ``step["output"] = path``.
    ``timings`` (optional) receives ``{name: seconds}``.
    """
    step = {"output": output, "seconds": None}
    t0 = time.perf_counter()
    try:
        yield step
    except EdgesegError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BuildError(f"{name} failed: {type(exc).__name__}: {first}") from exc
    dt = time.perf_counter() - t0
    step["seconds"] = dt
    if timings is not None:
        timings[name] = round(dt, 3)
    out = step["output"]
    if out is not None:
        out = Path(out)
        if not out.is_file() or out.stat().st_size == 0:
            raise BuildError(f"{name} failed: it wrote no output at '{out}' (or an empty file)")
        log.info("%s: %s (%.2f MB) in %.1f s", name, out.name, file_size_mb(out), dt)
    else:
        log.info("%s: done in %.1f s", name, dt)


def export_step_fn(name: str):
    """Decorator form of :func:`export_step` for a function that returns the output path."""

    def deco(fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with export_step(name) as step:
                result = fn(*args, **kwargs)
                if isinstance(result, (str, Path)):
                    step["output"] = result
            return result

        return wrapper

    return deco


def require_calib(precision: str, calib) -> None:
    """ConfigError when an int8 export has no calibration data."""
    if precision == "int8" and not calib:
        raise ConfigError(INT8_NEEDS_DATA)


def get_exporter(profile):
    """The module ``edgeseg.export.<profile.exporter>`` (imported lazily)."""
    name = profile.exporter
    try:
        return importlib.import_module(f"edgeseg.export.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"edgeseg.export.{name}":
            raise ConfigError(
                f"target '{profile.name}' names exporter '{name}', which edgeseg does not have: "
                f"fix 'exporter' in the target file"
            ) from exc
        raise


__all__ = ["BuildError", "ExportResult", "export_step", "export_step_fn", "get_exporter",
           "require_calib", "file_size_mb", "INT8_NEEDS_DATA"]
