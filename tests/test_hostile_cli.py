"""Hostile and faulty input through the real CLI (a subprocess per row): each row is a command
line and the damage done to a fixture beforehand, and asserts the exit code, one line on
stderr that names the file or value, no traceback, and no new file left behind.

The hostile checkpoint (code run on unpickling) has its own module, test_checkpoint_safety.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgeseg.build import build
from edgeseg.data.info import CAMVID
from edgeseg.models import create_model
from edgeseg.train.checkpoint import make_checkpoint, save_checkpoint

from helpers import make_camvid


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-cli")
    data = make_camvid(root / "camvid", 2, 2, (64, 96))
    torch.manual_seed(0)
    ckpt = root / "tiny.pt"
    save_checkpoint(make_checkpoint(create_model("unet", 11, base_channels=4, depth=2), CAMVID, (64, 96)), ckpt)
    art = build(ckpt, "onnxruntime-cpu", out=root / "art")
    run = root / "run"  # a finished run: a new one must not mix into it
    run.mkdir()
    (run / "metrics.jsonl").write_text("{}\n")
    shutil.copy(ckpt, run / "last.pt")
    return root, data, ckpt, art


def _edit_manifest(art: Path, edit) -> None:
    m = json.loads((art / "manifest.json").read_text())
    edit(m)
    (art / "manifest.json").write_text(json.dumps(m))


def _outside(m):
    m["files"]["model"] = "../../../etc/hostname"


def _negative_size(m):
    m["input"]["size"] = [-64, 96]


def _truncate_model(art: Path) -> None:
    p = art / "model.onnx"
    p.write_bytes(p.read_bytes()[:400])


# id: (argv, damage to a copy of the artifact (or None), exit code, text the one line must hold)
CASES = {
    "bench: model path outside the artifact": (["bench", "{art}", "--runs", "1"], lambda a: _edit_manifest(a, _outside),
                                              2, "points outside the artifact folder"),
    "demo: model path outside the artifact": (["demo", "--artifact", "{art}", "--source", "{data}/val", "--no-window", "--json", "{root}/d.json"],
                                             lambda a: _edit_manifest(a, _outside), 2,
                                             "points outside the artifact folder"),
    "bench: model file deleted": (["bench", "{art}", "--runs", "1"], lambda a: (a / "model.onnx").unlink(), 2,
                                  "files.model 'model.onnx' is missing or empty"),
    "bench: model file truncated": (["bench", "{art}", "--runs", "1"], _truncate_model, 2,
                                    "onnxruntime cannot load 'model.onnx'"),
    "demo: model file truncated": (["demo", "--artifact", "{art}", "--source", "{data}/val", "--no-window", "--json", "{root}/d.json"],
                                   _truncate_model, 2, "onnxruntime cannot load 'model.onnx'"),
    "bench: negative input size": (["bench", "{art}", "--runs", "1"], lambda a: _edit_manifest(a, _negative_size), 2,
                                   "input.size must be two positive integers"),
    "bench: manifest not an object": (["bench", "{art}", "--runs", "1"],
                                      lambda a: (a / "manifest.json").write_text("[1, 2]"), 2, "not a JSON object"),
    "demo: negative camera index": (["demo", "--artifact", "{art}", "--source", "-1", "--no-window", "--json", "{root}/d.json"], None, 2,
                                    "camera index -1 is negative"),
    "train: negative steps per epoch": (["train", "--model", "enet", "--data", "{data}", "--steps-per-epoch", "-1",
                                         "--out", "{root}/new"], None, 2, "--steps-per-epoch must be 0"),
    "train: validate every 0 epochs": (["train", "--model", "enet", "--data", "{data}", "--val-every", "0",
                                        "--out", "{root}/new"], None, 2, "--val-every must be at least 1"),
    "train: 0 threads": (["train", "--model", "enet", "--data", "{data}", "--threads", "0", "--out", "{root}/new"],
                         None, 2, "--threads must be at least 1"),
    "train: -1 workers": (["train", "--model", "enet", "--data", "{data}", "--workers", "-1", "--out", "{root}/new"],
                          None, 2, "--workers must be 0"),
    "train: --out holds a run": (["train", "--model", "enet", "--data", "{data}", "--epochs", "1", "--out",
                                  "{root}/run"], None, 2, "already holds a training run"),
    "eval: batch size 0": (["eval", "{ckpt}", "--data", "{data}", "--batch-size", "0"], None, 2,
                           "--batch-size must be at least 1"),
    "build: 0 threads": (["build", "{ckpt}", "--target", "onnxruntime-cpu", "--threads", "0", "--out", "{root}/b"],
                         None, 2, "--threads must be at least 1"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_one_line_nonzero_nothing_left(base, tmp_path, case):
    root, data, ckpt, art = base
    argv, damage, code, text = CASES[case]
    if damage is not None:
        art = Path(shutil.copytree(art, tmp_path / "art"))
        damage(art)
    args = [a.format(art=art, data=data, ckpt=ckpt, root=root) for a in argv]
    before = sorted(p for p in root.rglob("*")) + sorted(tmp_path.rglob("*"))
    p = subprocess.run([sys.executable, "-m", "edgeseg", *args], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == code, (p.returncode, p.stdout[-1000:], p.stderr[-2000:])
    assert "Traceback" not in p.stderr and len(lines) == 1 and text in lines[0], p.stderr[-2000:]
    assert sorted(p for p in root.rglob("*")) + sorted(tmp_path.rglob("*")) == before  # nothing new, nothing half
