"""List commands piped or as JSON: complete rows (no cell cut to a terminal's width, no
"[extra]" eaten as markup) and machine-readable output with --json."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgeseg.targets import list_targets
from edgeseg.zoo import list_zoo

LISTS = {
    "models": ["models", "deeplab*"],
    "zoo list": ["zoo", "list"],
    "targets": ["targets"],
    "recipes": ["recipes"],
    "data list": ["data", "list"],
}


def _run(args):
    # through a real pipe: stdout is not a terminal, as in `edgeseg models | grep ...`
    p = subprocess.run([sys.executable, "-m", "edgeseg", *args], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


@pytest.mark.parametrize("name", list(LISTS))
def test_piped_list_has_complete_rows_and_json_has_the_same(name):
    piped = _run(LISTS[name]).splitlines()
    header, rows = piped[0].split("\t"), [line.split("\t") for line in piped[1:]]
    assert all(len(r) == len(header) for r in rows) and not any("…" in c for r in rows for c in r)
    records = json.loads(_run([*LISTS[name], "--json"]))
    assert [list(r) for r in records] == [header] * len(records)
    assert [r[0] for r in rows] == [str(rec[header[0]]) for rec in records]
    if name == "models":
        assert "deeplabv3plus_mobilenetv2" in [r[0] for r in rows]
    if name == "zoo list":
        assert [r[0] for r in rows] == list_zoo() and sum(rec["default"] for rec in records) == 1
    if name == "targets":
        assert [r[0] for r in rows] == list_targets()
        # a reason that names an extra keeps its brackets
        assert all("pip install 'edgeseg'" not in c for r in rows for c in r)
