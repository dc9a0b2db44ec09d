"""Target profiles as data: one YAML file per target device/runtime in this package.

``load_target("openvino-cpu")`` gives a :class:`TargetProfile`: the format unit that builds
and runs it (``runtime:``, a unit of :mod:`edgeseg.formats`), the file format, precisions,
layout, shape policy, op constraints, latency/memory budget, parity thresholds and the
device compiler, if any. Adding a target for an existing unit is adding a YAML file here;
a new format is a new unit plus its YAML (docs/architecture.md). The top-level
``targets/`` folder of the repository is a link to this package folder.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from typing import Any

import yaml

from edgeseg.errors import ConfigError

LAYOUTS = ("NCHW", "NHWC")
SHAPES = ("static", "dynamic")


@dataclass
class TargetProfile:
    name: str
    description: str = ""
    format: str = "onnx"  # a file format the unit writes (edgeseg.formats.all_formats())
    runtime: str = "onnxruntime"  # the format unit: a subpackage of edgeseg.formats
    precisions: list = field(default_factory=lambda: ["fp32"])
    default_precision: str = "fp32"
    opset: int | None = 17
    layout: str = "NCHW"
    shape: str = "static"
    #: input dtype per precision, e.g. {"fp32": "float32", "int8": "int8"}; missing -> float32
    input_dtype: dict = field(default_factory=dict)
    #: device name for the runtime (OpenVINO "CPU" / "NPU", TensorRT "GPU"...), or None
    device: str | None = None
    #: free-form op constraints, e.g. {"forbidden": ["MaxUnpool"], "max_resize": 512}
    constraints: dict = field(default_factory=dict)
    #: {"p99_ms": float, "memory_mb": float}
    budget: dict = field(default_factory=dict)
    #: {"min_agreement": float or {precision: float}, "max_miou_drop": float}
    parity: dict = field(default_factory=lambda: {"min_agreement": 0.99, "max_miou_drop": 0.01})
    #: None, or {"name": "edgetpu_compiler", "command": "edgetpu_compiler -s -o {out_dir} {model}"}
    compiler: dict | None = None
    #: backend-specific options
    extra: dict = field(default_factory=dict)

    # -- helpers

    def check_precision(self, precision: str | None) -> str:
        """The precision to build (the default when None); ConfigError listing the valid ones."""
        if precision is None:
            return self.default_precision
        p = str(precision).lower()
        if p not in self.precisions:
            raise ConfigError(
                f"target '{self.name}' has no precision '{precision}': use one of {', '.join(self.precisions)}"
            )
        return p

    def input_dtype_for(self, precision: str) -> str:
        return str(self.input_dtype.get(precision, "float32"))

    def min_agreement(self, precision: str) -> float:
        v = self.parity.get("min_agreement", 0.99)
        if isinstance(v, dict):
            v = v.get(precision, v.get("default", 0.99))
        return float(v)

    def max_miou_drop(self, precision: str) -> float:
        v = self.parity.get("max_miou_drop", 0.01)
        if isinstance(v, dict):
            v = v.get(precision, v.get("default", 0.01))
        return float(v)

    def to_dict(self) -> dict:
        return asdict(self)


def _dir():
    return resources.files(__package__)


def list_targets() -> list[str]:
    """Names of the shipped target profiles, sorted."""
    return sorted(f.name[: -len(".yaml")] for f in _dir().iterdir() if f.name.endswith(".yaml"))


def profile_from_dict(d: dict, source: str = "profile") -> TargetProfile:
    """A TargetProfile from a mapping (as read from YAML), with its values checked."""
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: a target profile must be a mapping of fields")
    known = {f.name for f in fields(TargetProfile)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}: use {', '.join(sorted(known))}")
    if "name" not in d:
        raise ConfigError(f"{source}: the profile has no 'name'")
    p = TargetProfile(**d)
    p.precisions = [str(x).lower() for x in p.precisions]
    p.default_precision = str(p.default_precision).lower()
    from edgeseg.formats import get_unit

    unit = get_unit(p.runtime, f"{source}: runtime")
    checks = [
        (p.format in unit.formats, f"format '{p.format}' is not one the {p.runtime} unit writes "
                                   f"({', '.join(unit.formats)})"),
        (p.layout in LAYOUTS, f"layout '{p.layout}' is not one of {', '.join(LAYOUTS)}"),
        (p.shape in SHAPES, f"shape '{p.shape}' is not one of {', '.join(SHAPES)}"),
        (bool(p.precisions), "precisions is empty"),
        (p.default_precision in p.precisions,
         f"default_precision '{p.default_precision}' is not in precisions {p.precisions}"),
    ]
    for ok, msg in checks + _number_checks(p):
        if not ok:
            raise ConfigError(f"{source}: {msg}")
    return p


def _number(v, lo: float, hi: float) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi  # NaN fails both


def _number_checks(p: TargetProfile) -> list:
    """The budget and parity numbers (#31): a NaN or negative gate would pass or fail everything."""
    budget = p.budget if isinstance(p.budget, dict) else {None: p.budget}
    checks = [(_number(v, 1e-9, 1e12), f"budget.{k} must be a finite number > 0, got {v!r}") for k, v in budget.items()]
    parity = p.parity if isinstance(p.parity, dict) else {}
    for key in ("min_agreement", "max_miou_drop"):
        v = parity.get(key, 0.5)
        for prec, x in (v.items() if isinstance(v, dict) else [(None, v)]):
            field_name = f"parity.{key}" + (f".{prec}" if prec else "")
            checks.append((_number(x, 0.0, 1.0), f"{field_name} must be a number in 0..1, got {x!r}"))
    return checks


def load_target(name: str) -> TargetProfile:
    """The profile of target ``name``; an unknown name suggests the closest and lists all."""
    names = list_targets()
    if name not in names:
        close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.3)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"unknown target '{name}': {hint}targets: {', '.join(names)}")
    path = _dir().joinpath(f"{name}.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"target file '{path}' is not valid YAML ({exc}): fix the file") from exc
    data.setdefault("name", name)
    return profile_from_dict(data, f"target file '{path}'")


def runtime_available(profile: TargetProfile) -> tuple[bool, str]:
    """Whether the profile's runtime can run on this machine, and why not."""
    from edgeseg.formats import get_unit

    return get_unit(profile.runtime).available(profile)


def default_model(target: str | None) -> str:
    """The zoo model a command uses for ``target`` when it is given none: the profile's own
    ``extra.default_model`` where the zoo has it, else the zoo's best float model."""
    from edgeseg import zoo

    preferred = (load_target(target).extra or {}).get("default_model") if target else None
    return zoo.default_model_name(preferred=preferred)


def precision_available(profile: TargetProfile, precision: str) -> tuple[bool, str]:
    """Whether this machine can run ``precision`` of the profile (its runtime being here),
    e.g. bf16 on the OpenVINO CPU needs a CPU with bf16 (AMX / AVX-512 BF16)."""
    from edgeseg.formats import get_unit

    return get_unit(profile.runtime).precision_available(profile, precision)


__all__ = ["TargetProfile", "load_target", "list_targets", "profile_from_dict", "runtime_available",
           "precision_available", "default_model"]
