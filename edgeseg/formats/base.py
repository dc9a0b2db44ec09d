"""The target-format contract (:class:`FormatUnit`), its default half (:class:`Unit`), and
the wrapper around every export step.

A format unit is one package ``edgeseg.formats.<name>`` whose ``__init__`` defines ``UNIT``:
everything edgeseg knows about one runtime and the files it loads. Its ``export``::

    export(model, info, *, input_size: tuple[int, int], precision: str, out_dir: Path,
           profile: TargetProfile, calib: list[np.ndarray] | None, quantized: dict | None) -> ExportResult

``model`` is a SegmentationModel in eval mode on CPU in fp32 (or the checkpoint's quantized
model, where the unit takes its quantization: :attr:`FormatUnit.quantized_checkpoints`);
``calib`` is a list of normalised float32 NCHW arrays (1x3xHxW, padded like the runtime
pads), or None when no calibration data was given. ``ExportResult.details`` is merged into
the manifest (e.g. ``{"input": {"quant": {...}, "layout": "NHWC"}, "output": {...},
"quantization": {...}}``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from edgeseg.errors import ConfigError, EdgesegError

log = logging.getLogger("edgeseg.formats")

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


def median_latency(fn, runs: int, warmup: int, what: str = "latency") -> dict:
    """Median and p90 milliseconds of ``fn()`` over ``runs`` calls after ``warmup`` (compress's
    report times each variant's bare call with it)."""
    import numpy as np

    from edgeseg.progress import track

    for _ in range(warmup):
        fn()
    samples = []
    for _ in track(range(runs), what):  # the bar advances outside the timed call
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
    s = np.array(samples)
    return {"median_ms": float(np.median(s)), "p90_ms": float(np.percentile(s, 90)), "runs": runs}


def guarded(fn):
    """fn()'s result, or {"error": one line} when it raises (a broken runtime is a finding,
    for `edgeseg doctor`, not a crash)."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - any failure of a third-party probe is reported
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return {"error": f"{type(exc).__name__}: {first[:200]}"}


@dataclass(frozen=True)
class ParityProxy:
    """Where a build checks parity when the target's own runtime cannot run here: another
    unit's runtime (``runtime``) and/or another device of the same runtime (``device``)."""

    runtime: str | None
    device: str | None
    note: str


@runtime_checkable
class FormatUnit(Protocol):
    """Everything edgeseg knows about one target format and its runtime.

    ``name`` is the key target profiles give as ``runtime:`` and manifests record; the rest
    of edgeseg asks the unit and never names a format itself."""

    #: registry key: the profile's ``runtime`` and the manifest's ``runtime``
    name: str
    #: file formats it writes (a profile's ``format`` must be one of them)
    formats: tuple[str, ...]
    #: importable modules its runtime needs, and the pip distributions / edgeseg extra that install them
    runtime_modules: tuple[str, ...]
    #: importable modules a build for it needs
    build_modules: tuple[str, ...]
    #: the edgeseg extra that installs them (None: core dependencies, or a device SDK)
    extra: str | None
    #: quantized checkpoints (``ckpt["quantization"]["backend"]``) its export takes as they are;
    #: an NNCF checkpoint for a unit without "nncf" is re-quantized from its fine-tuned weights
    quantized_checkpoints: tuple[str, ...]
    #: ``edgeseg compress --target`` preset name (edgeseg.compress.nncf_setup.TARGETS) per profile device
    compress_presets: dict
    #: pip distributions whose versions a manifest records
    distributions: tuple[str, ...]

    def available(self, profile) -> tuple[bool, str]:
        """Whether the runtime can run ``profile`` here, and why not (with what to install)."""

    def precision_available(self, profile, precision: str) -> tuple[bool, str]:
        """Whether this machine can run ``precision`` (the runtime being here)."""

    def export(self, model, info, *, input_size, precision: str, out_dir: Path, profile, calib=None,
               quantized: dict | None = None, keep_float=()) -> ExportResult:
        """Write the artifact's files into ``out_dir`` (int8: the layers named in ``keep_float`` in float)."""

    def rank_int8_layers(self, model, input_size, artifact_file: Path, calib, work_dir: Path) -> list[dict] | None:
        """The int8 artifact's layers ranked by the error each adds on ``calib`` (None: not here)."""

    def predictor_class(self) -> type:
        """The Predictor subclass that runs its artifacts (imported on demand)."""

    def parity_proxy(self, profile, reason: str, model_file: str) -> ParityProxy | str | None:
        """Where parity runs when ``available`` said no (``reason``); None to skip parity, or
        a line saying why the proxy cannot run either."""

    def probe(self) -> dict:
        """What the runtime sees on this machine, for `edgeseg doctor`: at least ``summary``
        (one line); ``device_seen: False`` where it runs but not on the profile's device."""

    def runner_script(self) -> str:
        """The self-contained script (numpy + the runtime only) a remote bench runs on the device."""

    def speed_probe(self, profile, precision: str) -> dict | None:
        """A short measured probe of ``precision`` against fp32 on this machine (``{ms, fp32_ms,
        ratio, ran_as, ...}``), or None where it computes as fp32 does (nothing to compare)."""


class Unit:
    """Defaults for a :class:`FormatUnit`: a unit subclasses this and sets what differs."""

    name = ""
    formats: tuple[str, ...] = ()
    runtime_modules: tuple[str, ...] = ()
    build_modules: tuple[str, ...] = ()
    extra: str | None = None
    quantized_checkpoints: tuple[str, ...] = ()
    compress_presets: dict = {}
    #: pip distributions whose versions a manifest records
    distributions: tuple[str, ...] = ()
    #: whether ``export`` takes a finished ONNX model (formats.onnx_model.OnnxModel) as well as PyTorch
    takes_onnx_models = True
    #: whether int8 ``export`` can leave named layers in float (``keep_float``) and rank them
    keeps_layers_float = False
    #: the modules holding ``export`` and ``PREDICTOR``, relative to the unit's package
    export_module = ".export"
    runtime_module = ".runtime"
    #: the self-contained plain-runtime half a remote bench runs on the device (None: none yet)
    plain_module: str | None = ".plain"

    def _module(self, relative: str):
        return importlib.import_module(relative, type(self).__module__)

    def missing(self, modules) -> list[str]:
        return [m for m in modules if importlib.util.find_spec(m) is None]

    def install_hint(self) -> str:
        return f"pip install 'edgeseg[{self.extra}]'" if self.extra else "reinstall edgeseg"

    def available(self, profile) -> tuple[bool, str]:
        gone = self.missing(self.runtime_modules)
        if gone:
            return False, f"{', '.join(gone)} is not installed ({self.install_hint()})"
        return True, ""

    def precision_available(self, profile, precision: str) -> tuple[bool, str]:
        return True, ""

    def export(self, model, info, *, input_size, precision, out_dir, profile, calib=None, quantized=None,
               keep_float=()) -> ExportResult:
        module = self._module(self.export_module)
        kwargs = {"quantized": quantized} if quantized is not None else {}
        if keep_float:
            if not self.keeps_layers_float:
                raise BuildError(f"--keep-float is not available for {self.name} artifacts yet")
            kwargs["keep_float"] = list(keep_float)
        return module.export(model, info, input_size=input_size, precision=precision, out_dir=out_dir,
                             profile=profile, calib=calib, **kwargs)

    def rank_int8_layers(self, model, input_size, artifact_file: Path, calib, work_dir: Path) -> list[dict] | None:
        """The int8 artifact's layers, the one adding most error first (None: not measurable for this unit)."""
        return None

    def predictor_class(self) -> type:
        return self._module(self.runtime_module).PREDICTOR

    def parity_proxy(self, profile, reason: str, model_file: str) -> ParityProxy | str | None:
        return None

    def runner_script(self) -> str:
        """The one file a remote bench copies to the device: edgeseg.formats.runner_core, then
        this unit's plain-runtime module, then the call of ``main()``."""
        from pathlib import Path

        from edgeseg.errors import ConfigError

        if not self.plain_module:
            raise ConfigError(f"a remote bench of {self.name} artifacts is not available yet: bench on the "
                              f"device itself with edgeseg installed there")
        core = importlib.import_module("edgeseg.formats.runner_core")
        plain = self._module(self.plain_module)
        return (Path(core.__file__).read_text(encoding="utf-8") + "\n\n# ---- " + plain.__name__ + "\n"
                + Path(plain.__file__).read_text(encoding="utf-8")
                + "\n\nif __name__ == \"__main__\":\n    sys.exit(main())\n")

    def speed_probe(self, profile, precision: str) -> dict | None:
        return None

    def probe(self) -> dict:
        from edgeseg.machine import package_version

        gone = self.missing(self.runtime_modules)
        versions = {d: package_version(d) for d in self.distributions}
        if gone:
            return {"installed": False, "install": self.install_hint(), "versions": versions,
                    "summary": f"not installed ({self.install_hint()})"}
        return {"installed": True, "versions": versions,
                "summary": ", ".join(f"{d} {v}" for d, v in versions.items() if v) or "installed"}

    def __repr__(self):
        return f"<format unit {self.name}>"


__all__ = ["BuildError", "ExportResult", "export_step", "export_step_fn", "require_calib", "file_size_mb",
           "INT8_NEEDS_DATA", "FormatUnit", "Unit", "ParityProxy", "guarded", "median_latency"]
