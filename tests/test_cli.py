"""The CLI's shared behaviour: help, the models table, errors as one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgeseg.cli.main import main
from edgeseg.errors import MissingDependencyError, require


def test_models_table_lists_matching_models(capsys):
    assert main(["models", "fcn*", "--img-size", "64x96"]) == 0
    out = capsys.readouterr().out
    for name in ("fcn8s", "fcn16s", "fcn32s"):
        assert name in out
    assert "enet" not in out


def test_models_unknown_pattern(capsys):
    assert main(["models", "nothing*"]) == 1
    assert "no model matches" in capsys.readouterr().err


def test_missing_optional_dependency_names_the_extra():
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgeseg\[openvino\]'"):
        require("edgeseg_no_such_backend", "openvino", "OpenVINO builds")


def test_console_script_reports_errors_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgeseg", "eval", str(tmp_path / "nope.pt"), "--data",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
    assert "nope.pt" in proc.stderr


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("train", "eval", "predict", "models", "data"):
        assert cmd in out


def test_segment_kmeans_images_and_scores(tiny_camvid, tmp_path, capsys):
    import cv2

    image = sorted((tiny_camvid / "val").iterdir())[0]
    assert main(["segment", str(image), "-k", "4", "--out", str(tmp_path / "seg")]) == 0
    clusters = cv2.imread(str(tmp_path / "seg" / f"{image.stem}_clusters.png"), cv2.IMREAD_UNCHANGED)
    assert clusters.shape == (64, 96) and clusters.max() < 4
    assert main(["segment", "--data", str(tiny_camvid), "-k", "12", "--json", str(tmp_path / "k.json")]) == 0
    scores = json.loads((tmp_path / "k.json").read_text())
    # Flat class colours plus light noise: clusters recover the classes almost exactly.
    assert scores["miou"] > 0.9
    assert "majority-vote" in capsys.readouterr().out
    assert main(["segment", str(image), "-k", "1"]) == 2
