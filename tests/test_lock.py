"""The locked stack: constraints.txt pins every dependency pyproject names (extras included,
but the device-side tensorrt and the optional crf), each pin inside pyproject's bounds, and
the suite runs on exactly that stack (an install that ignored the lock is caught here)."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")

REPO = Path(__file__).resolve().parents[1]
DEVICE_SIDE = {"tensorrt", "pydensecrf2"}  # installed on the device / on request, not in .[all]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version and re.fullmatch(r"[A-Za-z0-9._+-]+", version), f"not a pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra if not r.startswith("edgeseg[")]
    return reqs


def test_every_dependency_is_pinned_inside_its_bounds():
    pins = _lock()
    for req in _requirements():
        name = canonicalize_name(req.name)
        if name in DEVICE_SIDE:
            continue
        assert name in pins, f"{req.name} is a dependency but constraints.txt does not pin it"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), \
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject's {req.specifier}"


def test_fast_moving_dependencies_have_upper_bounds():
    bounded = {canonicalize_name(r.name) for r in _requirements() if any(s.operator in ("<", "<=", "==", "~=")
                                                                         for s in r.specifier)}
    for name in ("torch", "litert-torch", "nncf", "openvino", "onnxruntime", "opencv-python-headless"):
        assert name in bounded, f"{name} has no upper bound in pyproject.toml"


def test_the_suite_runs_on_the_locked_stack():
    mismatched = []
    for name, pinned in _lock().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an extra that is not installed here
        if Version(installed).public != Version(pinned).public:  # torch 2.13.0+cpu is the 2.13.0 pin
            mismatched.append(f"{name} {installed} (lock {pinned})")
    assert not mismatched, ("installed versions differ from constraints.txt: " + ", ".join(mismatched)
                            + ": install with `pip install -c constraints.txt -e '.[all]'`")
