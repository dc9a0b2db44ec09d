"""The package's layers point one way, and no module takes another's private names.

An AST walk over every module of edgeseg, counting imports inside functions too. A unit is a
subpackage (``edgeseg.formats``) or a top-level module (``edgeseg.build``); each sits in one
layer of LAYERS, and may import only from its own layer's units below it or from lower
layers. docs/architecture.md explains the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import edgeseg

PACKAGE = Path(edgeseg.__file__).parent

#: lowest first; a unit may import its own unit, and units of lower layers
LAYERS = [
    {"edgeseg", "errors", "native_logs", "machine"},
    {"progress", "files", "sizes", "ssh"},
    {"data", "recipes"},
    {"zoo"},
    {"models"},
    {"losses", "metrics", "inference"},
    {"classical"},
    {"train"},
    {"compress"},
    {"formats"},
    {"checkpoints", "targets"},
    {"reference", "predict"},
    {"build", "evaluate", "doctor"},
    {"bench", "demo", "compress_report", "publish"},
    {"compress_run", "fit"},
    {"cli"},
    {"__main__"},
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path):
    """(imported module, imported name or None, line) for every edgeseg import in ``path``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                yield base, alias.name, node.lineno


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "edgeseg"


def _edges():
    for path in sorted(PACKAGE.rglob("*.py")):
        for target, name, line in _imports(path):
            if target == "edgeseg" or target.startswith("edgeseg."):
                yield path, _module_name(path), target, name, line


def _layer_of() -> dict[str, int]:
    return {unit: i for i, units in enumerate(LAYERS) for unit in units}


def test_every_unit_has_a_layer():
    layer = _layer_of()
    units = {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert units - set(layer) == set(), "add these units to LAYERS (and docs/architecture.md)"
    assert set(layer) - units == set(), "LAYERS names units that no longer exist"


def test_imports_point_down():
    layer = _layer_of()
    wrong = []
    for path, module, target, name, line in _edges():
        a, b = _unit(module), _unit(target)
        if b == "edgeseg" and name is not None and name != "__version__":
            b = _unit(f"edgeseg.{name}")  # `from edgeseg import zoo`
        if a != b and layer[b] >= layer[a] and not (layer[a] == layer[b] == 0):
            wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {a} (layer {layer[a]}) imports "
                         f"{target}{'.' + name if name else ''} ({b}, layer {layer[b]})")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_no_private_names_across_modules():
    wrong = []
    for path, module, target, name, line in _edges():
        if name and name.startswith("_") and not name.startswith("__") and target != module:
            wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: from {target} import {name}")
        if any(part.startswith("_") and not part.startswith("__") for part in target.split(".")):
            wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: import of private module {target}")
    assert not wrong, "private names imported across modules:\n" + "\n".join(wrong)


@pytest.mark.parametrize("name", ["onnx", "openvino", "litert", "tflite", "tensorrt", "onnxruntime"])
def test_no_module_outside_the_format_units_names_a_runtime_module(name):
    """Only a unit imports its runtime's package; everything else asks the unit."""
    wrong = []
    allowed = {"formats"}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if _unit(module) in allowed:
            continue
        for target, _, line in _imports(path):
            if target.split(".")[0] in (name, f"ai_edge_{name}"):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: import {target}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The walk itself finds an upward import and a private name (so a pass means something)."""
    pkg = tmp_path / "edgeseg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("def f():\n    from edgeseg.build import _secret\n")
    (pkg / "build.py").write_text("_secret = 1\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg, raising=False)
    globals()["PACKAGE"] = pkg
    try:
        edges = [(m, t, n) for _, m, t, n, _ in _edges()]
    finally:
        globals()["PACKAGE"] = Path(edgeseg.__file__).parent
    assert ("edgeseg.data", "edgeseg.build", "_secret") in edges
    layer = _layer_of()
    assert layer["build"] > layer["data"]
