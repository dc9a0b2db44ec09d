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

from edgeseg.build import build

from helpers import make_camvid, tiny_checkpoint


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-cli")
    data = make_camvid(root / "camvid", 2, 2, (64, 96))
    ckpt = tiny_checkpoint(root / "tiny.pt")
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
    "compress: --ignore names no module": (["compress", "{ckpt}", "--data", "{data}", "--ptq", "--ignore",
                                            "no.such.module", "--out", "{root}/c"], None, 2,
                                           "--ignore 'no.such.module' is not a module of the model"),
    "predict: --out is a file": (["predict", "{ckpt}", "{data}/val/val_0000.png", "--out", "{root}/tiny.pt"], None,
                                 2, "a file is in the way where a folder is needed"),
    "train: --out is a file": (["train", "--model", "enet", "--data", "{data}", "--epochs", "1", "--out",
                                "{root}/tiny.pt"], None, 2, "a file is in the way where a folder is needed"),
    "data check: missing folder": (["data", "check", "{root}/nope"], None, 2, "nope does not exist"),
    "zoo show: unknown name": (["zoo", "show", "nope"], None, 2, "'nope' is neither a checkpoint file nor a zoo"),
    "segment: k below 2": (["segment", "{data}/val/val_0000.png", "-k", "0"], None, 2, "must be an integer >= 2"),
    "models: no match": (["models", "zzz*"], None, 1, "no model matches 'zzz*'"),
    "bench: neither folder nor target": (["bench", "nope-target"], None, 2, "neither an artifact folder"),
    "bench: a second model file missing": (["bench", "{art}", "--runs", "1"],
                                           lambda a: (a / "model.opt.onnx").unlink(), 2,
                                           "files.optimized 'model.opt.onnx' is missing or empty"),
    "segment: --out under /proc": (["segment", "{data}/val/val_0000.png", "-k", "3", "--out", "/proc/edgeseg-no"],
                                   None, 2, "cannot use '/proc/edgeseg-no"),
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


@pytest.mark.parametrize("signame,code,text", [("SIGTERM", 143, "terminated (SIGTERM)"),
                                               ("SIGINT", 130, "interrupted (Ctrl-C)")])
def test_signal_during_build_leaves_nothing(base, tmp_path, signame, code, text):
    import signal
    import time

    root, data, ckpt, art = base
    out = tmp_path / "never"
    # A shell without job control starts background jobs with SIGINT ignored, and Python keeps an
    # ignored SIGINT ignored (as `nohup` wants): give the child the default so Ctrl-C is Ctrl-C
    # however pytest itself was started.
    p = subprocess.Popen([sys.executable, "-m", "edgeseg", "build", str(ckpt), "--target", "openvino-cpu",
                          "--out", str(out), "--parity-images", "8"], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 90
    while not list(tmp_path.glob(".never.build-*")) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "the build ended before its temporary folder was seen"
    p.send_signal(getattr(signal, signame))
    _, err = p.communicate(timeout=60)
    assert p.returncode == code and text in err and "Traceback" not in err, err[-2000:]
    assert list(tmp_path.iterdir()) == []  # no artifact, no hidden temporary folder


def test_train_removes_stale_temp_files_of_a_killed_run(base, tmp_path):
    root, data, ckpt, art = base
    out = tmp_path / "run"
    out.mkdir()
    (out / ".last.pt.abc123.tmp").write_bytes(b"")  # what kill -9 during a checkpoint write leaves
    p = subprocess.run([sys.executable, "-m", "edgeseg", "train", "--model", "unet", "--model-arg", "base_channels=4",
                        "--model-arg", "depth=2", "--data", str(data), "--epochs", "1", "--batch-size", "2",
                        "--workers", "0", "--out", str(out), "--no-progress"], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert not list(out.glob(".*.tmp")) and (out / "last.pt").is_file()


def test_compress_for_the_edge_tpu_without_the_tflite_extra_says_so_at_once(base, tmp_path):
    import time

    root, data, ckpt, art = base
    code = ("import sys; sys.modules['litert_torch'] = None\n"  # as if the [tflite] extra were not installed
            "from edgeseg.cli.main import main\n"
            f"sys.exit(main(['compress', {str(ckpt)!r}, '--data', {str(data)!r}, '--ptq', '--target', 'coral', "
            f"'--out', {str(tmp_path / 'c')!r}]))\n")
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "pip install 'edgeseg[tflite]'" in lines[0], p.stderr[-2000:]
    assert time.monotonic() - t0 < 30 and list(tmp_path.iterdir()) == []


def test_predict_inputs_with_the_same_name_do_not_overwrite_each_other(base, tmp_path):
    root, data, ckpt, art = base
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(data / "val" / "val_0000.png", tmp_path / sub / "x.png")
    p = subprocess.run([sys.executable, "-m", "edgeseg", "predict", str(ckpt), str(tmp_path / "a" / "x.png"),
                        str(tmp_path / "b" / "x.png"), "--out", str(tmp_path / "out")], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    names = sorted(q.name for q in (tmp_path / "out").iterdir())
    assert names == ["x-2_color.png", "x-2_mask.png", "x-2_overlay.png", "x_color.png", "x_mask.png",
                     "x_overlay.png"]


def _run_limited(args, cwd, max_file_bytes=None):
    """The CLI in a subprocess; with ``max_file_bytes`` every file it writes is capped there
    (RLIMIT_FSIZE: a write past it fails with EFBIG, as a full disk fails with ENOSPC)."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return subprocess.run([sys.executable, "-m", "edgeseg", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, preexec_fn=limit if max_file_bytes else None)


def _one_line(p, text):
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert len(lines) == 1 and text in lines[0], p.stderr[-2000:]


def test_report_path_that_is_a_folder_or_unwritable(base, tmp_path):
    root, data, ckpt, art = base
    (tmp_path / "adir").mkdir()
    p = _run_limited(["bench", str(art), "--runs", "1", "--warmup", "0", "--memory-runs", "0",
                      "--json", str(tmp_path / "adir")], tmp_path)
    _one_line(p, f"'{tmp_path / 'adir'}'")
    assert [q.name for q in tmp_path.iterdir()] == ["adir"] and not any((tmp_path / "adir").iterdir())
    p = _run_limited(["eval", str(ckpt), "--data", str(data), "--json", "/proc/edgeseg-no/x.json"], tmp_path)
    _one_line(p, "/proc/edgeseg-no")


def test_full_disk_during_training_is_one_line_and_leaves_no_temp_file(base, tmp_path):
    root, data, ckpt, art = base
    out = tmp_path / "run"
    p = _run_limited(["train", "--model", "enet", "--data", str(data), "--epochs", "1", "--batch-size", "2",
                      "--workers", "0", "--out", str(out), "--no-progress"], tmp_path, max_file_bytes=100_000)
    _one_line(p, f"cannot write '{out}")
    assert not list(out.glob(".*.tmp")) and not (out / "best.pt").exists()


def test_full_disk_during_predict_leaves_no_partial_image(base, tmp_path):
    root, data, ckpt, art = base
    out = tmp_path / "pred"
    p = _run_limited(["predict", str(ckpt), str(data / "val" / "val_0000.png"), "--out", str(out)], tmp_path,
                     max_file_bytes=200)
    _one_line(p, f"cannot write '{out}")
    assert not list(out.iterdir())  # neither a truncated PNG nor its temporary file


def test_a_build_that_finished_first_is_never_replaced_without_force(base, tmp_path, monkeypatch):
    import edgeseg.build as b
    from edgeseg.formats.base import BuildError

    root, data, ckpt, art = base
    out = tmp_path / "same"
    real = b.check_parity

    def other_build_finishes_meanwhile(*args, **kwargs):
        out.mkdir()
        (out / "manifest.json").write_text("{}")
        return real(*args, **kwargs)

    monkeypatch.setattr(b, "check_parity", other_build_finishes_meanwhile)
    with pytest.raises(BuildError, match="written by another build while this one ran"):
        b.build(ckpt, "onnxruntime-cpu", out=out)
    assert (out / "manifest.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["same"]  # and no temporary folder left
