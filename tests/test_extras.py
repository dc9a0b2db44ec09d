"""Every lazy import names an extra that pyproject.toml really has (or None for a core
dependency), so the 'pip install' line a user is given can be run as printed."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from edgeseg.errors import MissingDependencyError, require

ROOT = Path(__file__).resolve().parents[1]


def _require_calls():
    for path in sorted((ROOT / "edgeseg").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "require"
                    and len(node.args) >= 2):
                yield f"{path.relative_to(ROOT)}:{node.lineno}", node.args[1]


def test_every_require_names_an_existing_extra():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    calls = list(_require_calls())
    assert len(calls) > 10  # the scan finds the calls
    for where, arg in calls:
        assert isinstance(arg, ast.Constant), f"{where}: the extra must be a literal"
        assert arg.value is None or arg.value in extras, f"{where}: no extra '{arg.value}' in pyproject.toml"


@pytest.mark.parametrize("extra, text", [("openvino", "pip install 'edgeseg[openvino]'"),
                                         (None, "core dependency of edgeseg")])
def test_missing_module_message(extra, text):
    with pytest.raises(MissingDependencyError, match=text.replace("[", r"\[").replace("]", r"\]")):
        require("edgeseg_no_such_module", extra, "a test")
