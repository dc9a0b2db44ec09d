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


def _set(key, value):
    return lambda m: m.__setitem__(key, value)


def _quant(which, dtype, scale, zero_point):
    def edit(m):
        m[which]["dtype"] = dtype
        m[which]["quant"] = None if scale is None else {"scale": scale, "zero_point": zero_point}
    return edit


def _output_size(size):
    return lambda m: m["output"].update(size=size)


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
    # issue #31: every number the pre- and post-processing take from the manifest
    "bench: std of zero": (["bench", "{art}", "--runs", "1"], lambda a: _edit_manifest(a, _set("std", [0, 0, 0])), 2,
                           "std must be three finite numbers > 0"),
    "demo: std of zero": (["demo", "--artifact", "{art}", "--source", "{data}/val", "--no-window", "--json",
                           "{root}/d.json"], lambda a: _edit_manifest(a, _set("std", [0, 0, 0])), 2,
                          "std must be three finite numbers > 0"),
    "bench: NaN in mean": (["bench", "{art}", "--runs", "1"],
                           lambda a: _edit_manifest(a, _set("mean", [float("nan"), 0.4, 0.4])), 2,
                           "mean must be three finite numbers"),
    "bench: two std values": (["bench", "{art}", "--runs", "1"], lambda a: _edit_manifest(a, _set("std", [0.2, 0.2])),
                              2, "std must be three finite numbers > 0"),
    "bench: std as text": (["bench", "{art}", "--runs", "1"], lambda a: _edit_manifest(a, _set("std", "0.2")),
                           2, "std must be three finite numbers > 0"),
    "bench: input quant scale of zero": (["bench", "{art}", "--runs", "1"],
                                         lambda a: _edit_manifest(a, _quant("input", "int8", 0.0, 0)), 2,
                                         "input.quant.scale must be a finite number > 0"),
    "bench: output quant scale of inf": (["bench", "{art}", "--runs", "1"],
                                         lambda a: _edit_manifest(a, _quant("output", "float32", float("inf"), 0)),
                                         2, "output.quant.scale must be a finite number > 0"),
    "bench: uint8 zero point 300": (["bench", "{art}", "--runs", "1"],
                                    lambda a: _edit_manifest(a, _quant("input", "uint8", 0.02, 300)), 2,
                                    "input.quant.zero_point must be an integer in 0..255"),
    "bench: int8 input without quant": (["bench", "{art}", "--runs", "1"],
                                        lambda a: _edit_manifest(a, _quant("input", "int8", None, None)), 2,
                                        "input.quant must be {scale, zero_point}"),
    "bench: output size of zero": (["bench", "{art}", "--runs", "1"], lambda a: _edit_manifest(a, _output_size([0, 96])),
                                   2, "output.size must be two positive integers"),
    "bench: input size 1e9": (["bench", "{art}", "--runs", "1"],
                              lambda a: _edit_manifest(a, lambda m: m["input"].update(size=[10 ** 9, 96])), 2,
                              "input.size must be two positive integers"),
    "bench: class count not the classes'": (["bench", "{art}", "--runs", "1"],
                                            lambda a: _edit_manifest(a, lambda m: m["output"].update(num_classes=-1)),
                                            2, "output.num_classes must be 11"),
    "bench: a colour of 300": (["bench", "{art}", "--runs", "1"],
                               lambda a: _edit_manifest(a, lambda m: m["colors"].__setitem__(0, [300, 0, 0])), 2,
                               "colors must be 11 colours"),
    "bench: fewer colours than classes": (["bench", "{art}", "--runs", "1"],
                                          lambda a: _edit_manifest(a, lambda m: m["colors"].pop()), 2,
                                          "colors must be 11 colours"),
    "bench: no classes": (["bench", "{art}", "--runs", "1"], lambda a: _edit_manifest(a, _set("classes", [])), 2,
                          "classes must be a list of 1 to 255 class names"),
    "bench: unknown dtype": (["bench", "{art}", "--runs", "1"],
                             lambda a: _edit_manifest(a, lambda m: m["input"].update(dtype="complex64")), 2,
                             "input.dtype must be one of"),
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
    rc, err, seconds, mb = _measured(args, tmp_path)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == code, (rc, err[-2000:])
    assert "Traceback" not in err and len(lines) == 1 and text in lines[0], err[-2000:]
    assert seconds < MAX_SECONDS and mb < MAX_MB, (seconds, mb)
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


# --------------------------------------------------------------------------- issue #31: lies and bombs
# Small files whose headers claim huge sizes, artifacts and checkpoints whose numbers would poison
# pre-processing. Each row runs the real CLI and also asserts the time and the peak memory.

MAX_SECONDS, MAX_MB = 60, 1024  # "within seconds and under 1 GB" (the CLI starts in ~4 s on 2 busy cores)


def png_bomb(w: int, h: int) -> bytes:
    """A real 8x8 PNG whose IHDR (and its CRC) claims w x h."""
    import struct
    import zlib

    import cv2
    import numpy as np

    b = bytearray(cv2.imencode(".png", np.full((8, 8, 3), 90, np.uint8))[1].tobytes())
    b[16:24] = struct.pack(">II", w, h)  # IHDR data starts after the 8-byte signature, length and type
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    return bytes(b)


def jpeg_bomb(w: int, h: int) -> bytes:
    """A real 8x8 JPEG whose start-of-frame marker claims w x h (at most 65535 each)."""
    import struct

    import cv2
    import numpy as np

    b = bytearray(cv2.imencode(".jpg", np.full((8, 8, 3), 90, np.uint8))[1].tobytes())
    i = 2
    while b[i + 1] not in (0xC0, 0xC1, 0xC2):  # walk the markers to the SOF
        i += 2 + struct.unpack(">H", b[i + 2:i + 4])[0]
    b[i + 5:i + 9] = struct.pack(">HH", h, w)
    return bytes(b)


def tiff_bomb(w: int, h: int) -> bytes:
    """A real 8x8 TIFF whose first IFD's ImageWidth / ImageLength claim w x h."""
    import io
    import struct

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(buf, "TIFF")
    b = bytearray(buf.getvalue())
    assert b[:4] == b"II*\x00"
    ifd = struct.unpack("<I", b[4:8])[0]
    for k in range(struct.unpack("<H", b[ifd:ifd + 2])[0]):
        e = ifd + 2 + 12 * k
        tag = struct.unpack("<H", b[e:e + 2])[0]
        if tag in (256, 257):  # as LONG (type 4), count 1
            b[e + 2:e + 12] = struct.pack("<HII", 4, 1, w if tag == 256 else h)
    return bytes(b)


def webp_bomb(w: int, h: int) -> bytes:
    """A real 8x8 lossless WebP whose VP8L header claims w x h (at most 16384 each)."""
    import io
    import struct

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(buf, "WEBP", lossless=True)
    b = bytearray(buf.getvalue())
    assert b[12:16] == b"VP8L" and b[20] == 0x2F
    bits = struct.unpack("<I", b[21:25])[0] & ~((1 << 28) - 1)  # keep alpha and version bits
    b[21:25] = struct.pack("<I", bits | (w - 1) | ((h - 1) << 14))
    return bytes(b)


def frames(fmt: str) -> bytes:
    """Two 8x8 frames: an animated PNG or WebP, a two-page TIFF."""
    import io

    import numpy as np
    from PIL import Image

    a, b = (Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 200))
    buf = io.BytesIO()
    a.save(buf, fmt, save_all=True, append_images=[b])
    return buf.getvalue()


def ztxt_bomb() -> bytes:
    """A real 64x96 PNG with a 200 kB zTXt chunk that inflates to 200 MB before its pixels."""
    import struct
    import zlib

    import cv2
    import numpy as np

    b = cv2.imencode(".png", np.full((64, 96, 3), 90, np.uint8))[1].tobytes()
    data = b"Comment\0\0" + zlib.compress(bytes(200_000_000), 9)
    chunk = struct.pack(">I", len(data)) + b"zTXt" + data + struct.pack(">I", zlib.crc32(b"zTXt" + data))
    return b[:33] + chunk + b[33:]  # after the signature and IHDR


def y4m_bomb(w: int, h: int) -> bytes:
    """A raw-video file whose header declares w x h frames, with 1 kB of data."""
    return f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\nFRAME\n".encode() + bytes(1000)


#: a small Python that runs the CLI and reports its peak RSS. Linux hands a child the peak RSS
#: of the process it was forked from (kept across exec), so a CLI forked straight from pytest
#: (gigabytes after the suite's earlier tests) would report pytest's size, not its own.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "edgeseg", *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _measured(args, cwd, env=None):
    """The CLI in a subprocess: (exit code, stderr, seconds, peak resident MB of that process)."""
    import os
    import signal
    import tempfile
    import threading
    import time

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "maxrss_kb"
        t0 = time.monotonic()
        p = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(peak), *args], stdout=out, stderr=err, cwd=cwd,
                             env={**os.environ, **(env or {})}, start_new_session=True)
        killer = threading.Timer(300, lambda: os.killpg(p.pid, signal.SIGKILL))
        killer.start()
        p.wait()
        killer.cancel()
        seconds = time.monotonic() - t0
        err.seek(0)
        kb = int(peak.read_text()) if peak.is_file() else 0
        return p.returncode, err.read().decode(errors="replace"), seconds, kb / 1024


def _dataset_with(data: Path, tmp: Path, split: str, name: str, content: bytes, annot: bool = False) -> Path:
    """A copy of the dataset where one image (or, ``annot``, one mask) is replaced by ``content``."""
    copy = Path(shutil.copytree(data, tmp / "data"))
    (copy / (f"{split}annot" if annot else split) / name).write_bytes(content)
    return copy


def _file(name: str, content):
    def make(tmp, data, ckpt):
        (tmp / name).write_bytes(content() if callable(content) else content)
        return {"f": tmp / name}
    return make


def _data(split: str, name: str, content, annot: bool = False):
    def make(tmp, data, ckpt):
        body = content() if callable(content) else content
        return {"d": _dataset_with(data, tmp, split, name, body, annot)}
    return make


def _small_mask():
    import cv2
    import numpy as np

    return cv2.imencode(".png", np.zeros((32, 48), np.uint8))[1].tobytes()


def _wide_mask():
    import cv2
    import numpy as np

    return cv2.imencode(".png", np.full((64, 96), 1000, np.uint16))[1].tobytes()


def _needs_tiles(tmp, data, ckpt):
    """A header sized so that whole-image inference needs more memory than this machine has free,
    and tiled inference less (the estimates: 500 and 144 bytes per pixel)."""
    from edgeseg.predict import available_memory

    side = int((available_memory() / 300) ** 0.5)
    (tmp / "big.png").write_bytes(png_bomb(side, side))
    return {"f": tmp / "big.png", "limit": str(side * side)}


def _checkpoint(edit):
    """A copy of the test checkpoint, edited (its weights, its dataset descriptor)."""
    def make(tmp, data, ckpt):
        import torch

        c = torch.load(ckpt, weights_only=True)
        edit(c)
        torch.save(c, tmp / "bad.pt")
        return {"bad": tmp / "bad.pt"}
    return make


def _poison(value):
    def edit(c):
        key = next(k for k, t in c["state_dict"].items() if t.is_floating_point() and t.ndim == 4)
        c["state_dict"][key].view(-1)[3] = value
    return edit


def _eval_needs_tiles(tmp, data, ckpt):
    """A val image whose header makes eval's whole-image batches of 4 need twice the free memory."""
    from edgeseg.predict import available_memory

    side = int((available_memory() / 1000) ** 0.5)
    copy = _dataset_with(data, tmp, "val", "val_0000.png", png_bomb(side, side))
    return {"d": copy, "limit": str(side * side)}


VAL0 = "val_0000.png"
TRAIN0 = "train_0000.png"
PREDICT = ["predict", "{ckpt}", "{f}", "--out", "{tmp}/out"]
OVER = "over the 67.1-megapixel limit"

# id: (argv, prepare(tmp, data) -> extra names for argv, env, exit code, text the one line must hold)
BOMBS = {
    "predict: PNG claiming 20000x20000": (PREDICT, _file("bomb.png", lambda: png_bomb(20000, 20000)), None, 2,
                                          "is 20000x20000 (400.0 megapixels), " + OVER),
    "predict: PNG claiming 60000x60000 (past OpenCV's own cap)": (
        PREDICT, _file("bomb.png", lambda: png_bomb(60000, 60000)), None, 2, "is 60000x60000"),
    "predict: JPEG whose SOF claims 60000x60000": (PREDICT, _file("bomb.jpg", lambda: jpeg_bomb(60000, 60000)),
                                                   None, 2, "bomb.jpg is 60000x60000"),
    "predict: TIFF claiming 30000x30000": (PREDICT, _file("bomb.tif", lambda: tiff_bomb(30000, 30000)), None, 2,
                                           "bomb.tif is 30000x30000"),
    "predict: WebP claiming 16384x16384": (PREDICT, _file("bomb.webp", lambda: webp_bomb(16384, 16384)), None, 2,
                                           "bomb.webp is 16384x16384"),
    "predict: PNG whose text chunk inflates to 200 MB": (PREDICT, _file("ztxt.png", ztxt_bomb), None, 2,
                                                          "Decompressed data too large"),
    "predict: animated PNG": (PREDICT, _file("anim.png", lambda: frames("PNG")), None, 2,
                              "animated or multi-page PNG"),
    "predict: animated WebP": (PREDICT, _file("anim.webp", lambda: frames("WEBP")), None, 2,
                               "animated or multi-page WEBP"),
    "predict: two-page TIFF": (PREDICT, _file("pages.tif", lambda: frames("TIFF")), None, 2,
                               "animated or multi-page TIFF"),
    "predict: a limit raised, but too big for whole-image inference": (
        ["--max-image-pixels", "{limit}", *PREDICT], _needs_tiles, None, 2, "use --mode tile"),
    "predict: OpenCV's own cap (CV_IO_MAX_IMAGE_PIXELS) is one line": (
        ["predict", "{ckpt}", "{data}/val/" + VAL0, "--out", "{tmp}/out"], None,
        {"OPENCV_IO_MAX_IMAGE_PIXELS": "1000"}, 2, "cannot decode image"),
    "predict: --max-image-pixels 0": (["--max-image-pixels", "0", *PREDICT], _file("x.png", b""), None, 2,
                                      "--max-image-pixels must be at least 1"),
    "predict: EDGESEG_MAX_IMAGE_PIXELS not a number": (
        PREDICT, _file("x.png", lambda: png_bomb(8, 8)), {"EDGESEG_MAX_IMAGE_PIXELS": "lots"}, 2,
        "EDGESEG_MAX_IMAGE_PIXELS='lots' is not a positive number"),
    "segment: PNG bomb": (["segment", "{f}", "-k", "3", "--out", "{tmp}/seg"],
                          _file("bomb.png", lambda: png_bomb(20000, 20000)), None, 2, "bomb.png is 20000x20000"),
    "data check: a val image is a PNG bomb": (["data", "check", "{d}"], _data("val", VAL0, lambda: png_bomb(20000, 20000)),
                                              None, 1, VAL0 + " is 20000x20000"),
    "data check: a mask is a PNG bomb": (["data", "check", "{d}"],
                                         _data("val", VAL0, lambda: png_bomb(20000, 20000), annot=True), None, 1,
                                         "mask "),
    "data check: a mask smaller than its image": (["data", "check", "{d}"],
                                                  _data("val", VAL0, _small_mask, annot=True), None, 1,
                                                  "is 64x96 but its mask"),
    "data check: a 16-bit mask with values past 255": (["data", "check", "{d}"],
                                                       _data("val", VAL0, _wide_mask, annot=True), None, 1,
                                                       "pixel type uint16 with values up to 1000"),
    "train: a train image is a JPEG bomb": (
        ["train", "--model", "enet", "--data", "{d}", "--epochs", "1", "--out", "{tmp}/run"],
        _data("train", TRAIN0, lambda: jpeg_bomb(60000, 60000)), None, 2, TRAIN0 + " is 60000x60000"),
    "eval: a val image is a TIFF bomb": (["eval", "{ckpt}", "--data", "{d}"],
                                         _data("val", VAL0, lambda: tiff_bomb(30000, 30000)), None, 2,
                                         VAL0 + " is 30000x30000"),
    "eval: a limit raised, but too big for whole-image batches": (
        ["--max-image-pixels", "{limit}", "eval", "{ckpt}", "--data", "{d}"], _eval_needs_tiles, None, 2,
        "whole-image inference of 4 such images at once needs"),
    "build: a calibration image is a PNG bomb": (
        ["build", "{ckpt}", "--target", "onnxruntime-cpu", "--precision", "int8", "--data", "{d}", "--out", "{tmp}/b"],
        _data("train", TRAIN0, lambda: png_bomb(20000, 20000)), None, 2, TRAIN0 + " is 20000x20000"),
    "compress: a calibration image is a PNG bomb": (
        ["compress", "{ckpt}", "--data", "{d}", "--ptq", "--out", "{tmp}/c"],
        _data("train", TRAIN0, lambda: png_bomb(20000, 20000)), None, 2, TRAIN0 + " is 20000x20000"),
    "demo: a PNG bomb in the folder source": (
        ["demo", "--artifact", "{art}", "--source", "{tmp}/frames", "--no-window", "--json", "{tmp}/d.json"],
        lambda tmp, data, ckpt: (tmp / "frames").mkdir() or {"f": (tmp / "frames" / "a.png").write_bytes(png_bomb(20000, 20000))},
        None, 3, "a.png is 20000x20000"),
    "eval: NaN in a checkpoint's weights": (["eval", "{bad}", "--data", "{data}"], _checkpoint(_poison(float("nan"))),
                                            None, 2, "holds NaN or inf values"),
    "predict: inf in a checkpoint's weights": (["predict", "{bad}", "{data}/val/" + VAL0, "--out", "{tmp}/out"],
                                               _checkpoint(_poison(float("inf"))), None, 2, "holds NaN or inf values"),
    "build: NaN in a checkpoint's weights": (["build", "{bad}", "--target", "onnxruntime-cpu", "--out", "{tmp}/b"],
                                             _checkpoint(_poison(float("nan"))), None, 2, "holds NaN or inf values"),
    "eval: a checkpoint whose dataset std is 0": (
        ["eval", "{bad}", "--data", "{data}"], _checkpoint(lambda c: c["dataset"].update(std=[0.0, 0.0, 0.0])), None,
        2, "std must be three finite numbers > 0"),
    "predict: a checkpoint whose dataset mean is NaN": (
        ["predict", "{bad}", "{data}/val/" + VAL0, "--out", "{tmp}/out"],
        _checkpoint(lambda c: c["dataset"].update(mean=[float("nan"), 0.4, 0.4])), None, 2,
        "mean must be three finite numbers"),
    "train: NaN weight decay": (["train", "--model", "enet", "--data", "{data}", "--weight-decay", "nan", "--out",
                                 "{tmp}/run"], None, None, 2, "weight_decay must be a finite number"),
    "demo: a video whose frames are 12000x12000": (
        ["demo", "--artifact", "{art}", "--source", "{f}", "--no-window", "--json", "{tmp}/d.json"],
        _file("v.y4m", lambda: y4m_bomb(12000, 12000)), None, 3, "has 12000x12000 frames"),
}


@pytest.mark.parametrize("case", list(BOMBS))
def test_images_that_lie_about_their_size(base, tmp_path, case):
    root, data, ckpt, art = base
    argv, prepare, env, code, text = BOMBS[case]
    names = prepare(tmp_path, data, ckpt) if prepare else {}
    args = [a.format(art=art, data=data, ckpt=ckpt, root=root, tmp=tmp_path, **names) for a in argv]
    before = sorted(root.rglob("*")) + sorted(tmp_path.rglob("*"))
    rc, err, seconds, mb = _measured(args, tmp_path, env)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == code, (rc, err[-2000:])
    assert "Traceback" not in err and len(lines) == 1 and text in lines[0], err[-2000:]
    assert seconds < MAX_SECONDS and mb < MAX_MB, (seconds, mb)
    assert sorted(root.rglob("*")) + sorted(tmp_path.rglob("*")) == before  # nothing new, nothing half


def test_recipe_numbers_are_checked():
    """Recipes are shipped files, read by name: each one's numbers pass, and a damaged one is one line."""
    from edgeseg.errors import ConfigError
    from edgeseg.recipes import list_recipes, load_recipe
    from edgeseg.train.trainer import TrainConfig

    for name in list_recipes():
        TrainConfig.from_dict({**load_recipe(name), "data": "d"}).validate()
    recipe = {**load_recipe(list_recipes()[0]), "data": "d"}
    for key, value, text in (("lr", "0.01", "lr must be a finite number"), ("epochs", float("inf"), "epochs must be"),
                             ("weight_decay", -1.0, "--weight-decay must be 0 or more"),
                             ("momentum", 1.5, "momentum must be at least 0 and below 1"),
                             ("batch_size", True, "batch_size must be a finite number")):
        with pytest.raises(ConfigError, match=text):
            TrainConfig.from_dict({**recipe, key: value}).validate()


def test_target_profile_numbers_are_checked():
    from edgeseg.errors import ConfigError
    from edgeseg.targets import list_targets, load_target, profile_from_dict

    profiles = [load_target(name) for name in list_targets()]  # every shipped profile passes
    base = profiles[0].to_dict()
    for edit, text in ((lambda d: d["budget"].update(p99_ms=float("nan")), "budget.p99_ms must be a finite number > 0"),
                       (lambda d: d["budget"].update(memory_mb=-5), "budget.memory_mb must be a finite number > 0"),
                       (lambda d: d["parity"].update(max_miou_drop="a lot"), "parity.max_miou_drop must be a number"),
                       (lambda d: d["parity"].update(min_agreement={"fp32": 1.5}),
                        "parity.min_agreement.fp32 must be a number in 0..1")):
        d = json.loads(json.dumps(base))
        edit(d)
        with pytest.raises(ConfigError, match=text):
            profile_from_dict(d, "test profile")



def test_predict_many_images_over_the_budget_together_decodes_them_one_at_a_time(base, tmp_path):
    """Inputs that fit the pixel budget one by one but not together are checked first, then decoded
    again in turn (not all held at once); the outputs are those of a run that held them."""
    root, data, ckpt, art = base
    images = [str(data / "val" / VAL0), str(data / "val" / "val_0001.png")]  # 64x96 = 6144 pixels each
    for out, limit in (("held", []), ("in-turn", ["--max-image-pixels", "7000"])):
        p = subprocess.run([sys.executable, "-m", "edgeseg", *limit, "predict", str(ckpt), *images, "--out",
                            str(tmp_path / out)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert p.returncode == 0, p.stderr[-2000:]
    held, in_turn = (sorted((tmp_path / d).iterdir()) for d in ("held", "in-turn"))
    assert [f.name for f in held] == [f.name for f in in_turn] and len(held) == 6
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(held, in_turn))
