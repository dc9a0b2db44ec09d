"""Target formats: one unit per runtime, found by name.

Each subpackage ``edgeseg.formats.<name>`` is one unit (:class:`~edgeseg.formats.base.FormatUnit`):
its export, its runtime Predictor, its availability check and install hint, which quantized
checkpoints it takes, its compress preset and its parity proxy. Its ``__init__`` defines
``UNIT`` and imports nothing heavy; the registry finds the units by listing this package,
so adding a format is adding a subpackage (and a target YAML that names it as ``runtime:``).

Shared by the units: :mod:`.predictor` (the Predictor contract and the manifest reader),
:mod:`.base` (the unit contract, :class:`ExportResult`, :func:`export_step`) and
:mod:`.onnx` (PyTorch -> ONNX, for the units that start from an ONNX file).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import pkgutil
from pathlib import Path

from edgeseg.errors import ConfigError, EdgesegError, MissingDependencyError
from edgeseg.formats.base import BuildError, ExportResult, FormatUnit, ParityProxy, export_step
from edgeseg.formats.predictor import Predictor, read_manifest


@functools.cache
def _units() -> dict:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        unit = getattr(module, "UNIT", None)
        if unit is None or unit.name != info.name:
            raise RuntimeError(f"edgeseg.formats.{info.name} defines no UNIT named '{info.name}'")
        found[info.name] = unit
    return found


def unit_names() -> list[str]:
    """Names of every format unit, sorted."""
    return sorted(_units())


def all_formats() -> list[str]:
    """Every file format some unit writes (what a target profile's ``format`` may say)."""
    return sorted({f for u in _units().values() for f in u.formats})


def get_unit(name: str, where: str = "") -> FormatUnit:
    """The unit called ``name``; an unknown name is one line naming the closest and all."""
    units = _units()
    if name not in units:
        close = difflib.get_close_matches(str(name), list(units), n=1, cutoff=0.4)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"{where or 'runtime'} '{name}' is not one edgeseg has: {hint}runtimes: "
                          f"{', '.join(sorted(units))}")
    return units[name]


def tool_versions() -> dict:
    """Versions of the installed tools that matter for an artifact: edgeseg's own
    (edgeseg.machine.TOOL_PACKAGES) and every unit's distributions (missing ones left out)."""
    from edgeseg.machine import package_version
    from edgeseg.machine import tool_versions as core_versions

    out = core_versions()
    for unit in _units().values():
        for dist in unit.distributions:
            if (v := package_version(dist)) is not None:
                out[dist] = v
    return out


def predictor_class(artifact_dir, runtime: str | None = None) -> type:
    """The Predictor class :func:`load_predictor` would use for an artifact folder."""
    return _predictor_class(artifact_dir, read_manifest(artifact_dir), runtime)


def _predictor_class(artifact_dir, manifest: dict, runtime: str | None) -> type:
    name = runtime or manifest["runtime"]
    if name not in _units():
        raise ConfigError(f"manifest of '{artifact_dir}' names runtime '{name}', which this edgeseg "
                          f"does not have: upgrade edgeseg")
    unit = _units()[name]
    try:
        return unit.predictor_class()
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(exc.name or name, unit.extra, f"the {name} runtime") from exc


def load_predictor(artifact_dir, *, threads: int | None = None, device: str | None = None,
                   runtime: str | None = None) -> Predictor:
    """The Predictor for an artifact folder, from its manifest's ``runtime`` (or ``runtime``
    to run the same files elsewhere, e.g. a jetson ONNX on ``onnxruntime``)."""
    manifest = read_manifest(artifact_dir)
    cls = _predictor_class(artifact_dir, manifest, runtime)
    try:
        return cls(Path(artifact_dir), manifest, threads=threads, device=device)
    except (EdgesegError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the runtime's own error on a damaged file: one line, not its traceback
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(f"artifact '{artifact_dir}': {runtime or manifest['runtime']} cannot load "
                          f"'{manifest['files']['model']}' ({type(exc).__name__}: {first}): the artifact is "
                          f"damaged or from another version; rebuild it with `edgeseg build`") from exc


__all__ = ["FormatUnit", "ParityProxy", "BuildError", "ExportResult", "export_step", "Predictor", "read_manifest",
           "unit_names", "all_formats", "get_unit", "tool_versions", "predictor_class", "load_predictor"]
