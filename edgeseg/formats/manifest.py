"""The artifact manifest: one typed structure (:class:`Manifest`), built in one place
(:func:`make_manifest`), written atomically (:func:`write_manifest`) and read back with every
file it names checked to lie inside the artifact folder (:func:`read_manifest`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import TypedDict

from edgeseg.errors import ConfigError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class TensorSpec(TypedDict, total=False):
    name: str  # the graph's input/output name (ncnn: its blob name)
    size: list  # [H, W]
    layout: str  # NCHW | NHWC
    dtype: str  # float32, int8, uint8...
    quant: dict | None  # {scale, zero_point} for an integer tensor
    fit: str  # input only: pad | resize
    kind: str  # output only: logits | classes
    num_classes: int


class Manifest(TypedDict, total=False):
    format_version: int
    model: dict  # {name, num_classes, kwargs}
    target: str | None
    format: str
    runtime: str  # the format unit that runs it
    device: str | None
    precision: str
    dataset: str
    classes: list
    colors: list
    ignore_index: int
    mean: list
    std: list
    input: TensorSpec
    output: TensorSpec
    files: dict  # {"model": file, ...}: every file the runtime loads, inside the folder
    source: dict  # the checkpoint: path or zoo name, sha256, holdout
    quantization: dict | None
    tools: dict  # package -> version
    build_time: str
    build_seconds: float | None
    export_seconds: float
    compiler: dict | None
    parity: dict | None
    execution: dict


def read_manifest(artifact_dir) -> Manifest:
    """The parsed manifest.json of an artifact folder (ConfigError naming the file otherwise)."""
    path = Path(artifact_dir) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"'{artifact_dir}' is not an edgeseg artifact (no {MANIFEST}): "
                          f"give a folder written by `edgeseg build`")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"manifest '{path}' cannot be read ({exc}): rebuild the artifact") from exc
    if not isinstance(m, dict):
        raise ConfigError(f"manifest '{path}' is not a JSON object: rebuild the artifact with `edgeseg build`")
    for key in ("runtime", "input", "output", "files", "mean", "std"):
        if key not in m:
            raise ConfigError(f"manifest '{path}' has no '{key}': rebuild the artifact with `edgeseg build`")
    if int(m.get("format_version", 1)) > FORMAT_VERSION:
        raise ConfigError(f"manifest '{path}' has format version {m['format_version']}, newer than this "
                          f"edgeseg understands ({FORMAT_VERSION}): upgrade edgeseg")
    _check_files(Path(artifact_dir), m, path)
    _check_numbers(m, path)
    return m


# -- the numbers pre- and post-processing take from the manifest: a zero std or scale would
# turn every input into inf/NaN, a colour of 300 or a class count of -1 would crash later

_DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64")
_INT_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "int32": (-2 ** 31, 2 ** 31 - 1)}
_MAX_SIDE = 16384


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _bad(path: Path, field: str, rule: str, value) -> ConfigError:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return ConfigError(f"manifest '{path}': {field} must be {rule}, got {shown}: "
                       f"rebuild the artifact with `edgeseg build`")


def _check_size(path: Path, field: str, size, required: bool) -> None:
    if size is None and not required:
        return
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and 0 < v <= _MAX_SIDE for v in size)):
        raise _bad(path, field, f"two positive integers [H, W] (at most {_MAX_SIDE})", size)


def _check_triple(path: Path, field: str, values, lo: float, hi: float, rule: str) -> None:
    if not (isinstance(values, list) and len(values) == 3 and all(_is_number(v) and lo <= v <= hi for v in values)):
        raise _bad(path, field, rule, values)


def _check_quant(path: Path, field: str, quant, dtype) -> None:
    if quant is None:
        return
    if not isinstance(quant, dict):
        raise _bad(path, field, "null or {scale, zero_point}", quant)
    scale, zp = quant.get("scale"), quant.get("zero_point")
    if not (_is_number(scale) and scale > 0):
        raise _bad(path, f"{field}.scale", "a finite number > 0", scale)
    lo, hi = _INT_RANGE.get(dtype, _INT_RANGE["int32"])
    if not (_is_int(zp) and lo <= zp <= hi):
        raise _bad(path, f"{field}.zero_point", f"an integer in {lo}..{hi} ({dtype})", zp)


def _check_tensor(path: Path, name: str, spec) -> None:
    if not isinstance(spec, dict):
        raise _bad(path, name, "an object", spec)
    dtype = spec.get("dtype", "float32")
    if dtype not in _DTYPES:
        raise _bad(path, f"{name}.dtype", f"one of {', '.join(_DTYPES)}", dtype)
    if spec.get("layout", "NCHW") not in ("NCHW", "NHWC"):
        raise _bad(path, f"{name}.layout", "NCHW or NHWC", spec.get("layout"))
    _check_size(path, f"{name}.size", spec.get("size"), required=name == "input")
    _check_quant(path, f"{name}.quant", spec.get("quant"), dtype)


def _check_classes(m: dict, path: Path) -> None:
    classes, colors = m.get("classes"), m.get("colors")
    if "classes" not in m:  # a hand-written manifest: the class counts must still be sane
        for field, value in (("model.num_classes", (m.get("model") or {}).get("num_classes", 1)),
                             ("output.num_classes", m["output"].get("num_classes", 1))):
            if not (_is_int(value) and 1 <= value <= 255):
                raise _bad(path, field, "an integer in 1..255", value)
        return
    if not (isinstance(classes, list) and 1 <= len(classes) <= 255 and all(isinstance(c, str) for c in classes)):
        raise _bad(path, "classes", "a list of 1 to 255 class names", classes)
    n = len(classes)
    ok = lambda c: isinstance(c, list) and len(c) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in c)  # noqa: E731
    if colors is not None and not (isinstance(colors, list) and len(colors) == n and all(ok(c) for c in colors)):
        raise _bad(path, "colors", f"{n} colours (one per class) of three integers 0..255", colors)
    for field, value in (("model.num_classes", (m.get("model") or {}).get("num_classes", n)),
                         ("output.num_classes", m["output"].get("num_classes", n))):
        if not (_is_int(value) and value == n):
            raise _bad(path, field, f"{n}, the number of classes", value)
    ignore = m.get("ignore_index", 255)
    if not (_is_int(ignore) and 0 <= ignore <= 255):
        raise _bad(path, "ignore_index", "an integer 0..255", ignore)


def _check_numbers(m: dict, path: Path) -> None:
    """Type, length, finiteness and range of every number the pre- and post-processing use."""
    _check_triple(path, "mean", m["mean"], -1e6, 1e6, "three finite numbers")
    _check_triple(path, "std", m["std"], 1e-6, 1e6, "three finite numbers > 0")
    _check_tensor(path, "input", m["input"])
    _check_tensor(path, "output", m["output"])
    if m["input"].get("fit", "pad") not in ("pad", "resize"):
        raise _bad(path, "input.fit", "pad or resize", m["input"].get("fit"))
    if m["output"].get("kind", "logits") not in ("logits", "classes"):
        raise _bad(path, "output.kind", "logits or classes", m["output"].get("kind"))
    if m["input"].get("dtype", "float32") in _INT_RANGE and not m["input"].get("quant"):
        raise _bad(path, "input.quant", f"{{scale, zero_point}} for a {m['input']['dtype']} input", None)
    _check_classes(m, path)


def _check_files(artifact_dir: Path, m: dict, path: Path) -> None:
    """Every file the manifest names lies inside the artifact folder (no '..', no absolute
    path, no link out of it) and exists: a manifest from elsewhere cannot make edgeseg read
    another file."""
    files = m["files"]
    if not isinstance(files, dict) or "model" not in files:
        raise ConfigError(f"manifest '{path}' has no files.model: rebuild the artifact with `edgeseg build`")
    root = artifact_dir.resolve()
    for key, name in files.items():
        if not isinstance(name, str) or not name or Path(name).is_absolute():
            raise ConfigError(f"manifest '{path}': files.{key} must be a file name inside the artifact folder, "
                              f"got {name!r}")
        target = (root / name).resolve()
        if not target.is_relative_to(root):
            raise ConfigError(f"manifest '{path}': files.{key} '{name}' points outside the artifact folder: "
                              f"refusing to read it; rebuild the artifact with `edgeseg build`")
        if not target.is_file() or target.stat().st_size == 0:
            raise ConfigError(f"artifact '{artifact_dir}' is damaged: files.{key} '{name}' is missing or empty: "
                              f"rebuild it with `edgeseg build`")



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
                  extra: dict | None = None) -> Manifest:
    """The manifest of an artifact; ``result.details`` (an ExportResult) is merged in last.
    ``profile`` None: the in-memory PyTorch reference (runtime ``torch``, no files, no tools).
    """
    h, w = (int(v) for v in input_size)
    layout = profile.layout if profile is not None else "NCHW"
    m: Manifest = {
        "format_version": FORMAT_VERSION,
        "model": {"name": getattr(model, "model_name", type(model).__name__),
                  "num_classes": int(model.num_classes),
                  "kwargs": dict(getattr(model, "model_kwargs", {}))},
        "target": profile.name if profile is not None else None,
        "format": profile.format if profile is not None else "pytorch",
        "runtime": profile.runtime if profile is not None else "torch",
        "device": profile.device if profile is not None else None,
        "precision": precision,
        "dataset": info.name,
        "classes": list(info.classes),
        "colors": [list(c) for c in info.colors],
        "ignore_index": int(info.ignore_index),
        "mean": list(info.mean),
        "std": list(info.std),
        "input": {"name": "input", "size": [h, w], "layout": layout,
                  "dtype": profile.input_dtype_for(precision) if profile is not None else "float32",
                  "quant": None, "fit": "pad"},
        "output": {"name": "logits", "layout": layout, "kind": "logits", "dtype": "float32", "quant": None,
                   "size": [h, w], "num_classes": int(model.num_classes)},
        "files": dict(files or {}),
        "source": source or {},
        "quantization": quantization,
        "tools": _tool_versions() if profile is not None else {},
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


def write_manifest(artifact_dir, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (a crash never leaves half of one)."""
    from edgeseg.files import atomic_write_text

    path = Path(artifact_dir) / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=2, default=str) + "\n")
    return path


def _tool_versions() -> dict:
    from edgeseg.formats import tool_versions

    return tool_versions()


__all__ = ["Manifest", "TensorSpec", "MANIFEST", "FORMAT_VERSION", "make_manifest", "write_manifest", "read_manifest"]
