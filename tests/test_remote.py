"""edgeseg bench --remote against a real sshd on 127.0.0.1 (throwaway keys) whose "device"
Python has only numpy and the runtime: the report matches a local bench, nothing is left on the
device, and every failure (unknown host, refused key, unknown host key, missing runtime,
missing Python, timeout) is one line with a non-zero exit. CI installs openssh-server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import make_camvid, tiny_checkpoint

from edgeseg.build import build
from edgeseg.cli.main import main

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
H, W = 64, 96
FAST = ["--runs", "20", "--warmup", "3", "--threads", "1"]


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import loopback_device  # noqa: E402


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    if not os.path.exists(SSHD):
        pytest.skip("sshd is not installed (apt-get install openssh-server)")
    root = tmp_path_factory.mktemp("device")
    try:
        dev = loopback_device.start(root)
    except RuntimeError as exc:
        pytest.skip(str(exc))
    bare = loopback_device.device_python(root / "bare-env", ["numpy", "numpy.libs"])
    yield {**dev, "bare": str(bare)}
    loopback_device.stop(dev)


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote-art")
    data = make_camvid(root / "camvid", 4, 6, (H, W))
    ckpt = tiny_checkpoint(root / "t.pt", (H, W))
    return build(ckpt, "onnxruntime-cpu", out=root / "art", parity_images=2), data


def remote_bench(device, art, host="loopback", *extra, python=None):
    artifact, data = art
    return main(["bench", str(artifact), "--remote", host, "--ssh-config", str(device["config"]),
                 "--remote-python", python or device["python"], *FAST, *map(str, extra)])


def _left_on_device() -> list[str]:
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    return sorted(p.name for p in tmp.glob("edgeseg-bench.*"))


def test_the_device_python_has_no_edgeseg_and_no_torch(device):
    for module in ("edgeseg", "torch"):
        r = subprocess.run([device["python"], "-c", f"import {module}"], capture_output=True, cwd=device["root"])
        assert r.returncode != 0
    assert subprocess.run([device["python"], "-c", "import numpy, onnxruntime"]).returncode == 0


def test_remote_report_matches_a_local_bench_and_leaves_nothing(device, art, tmp_path, capsys):
    before = _left_on_device()
    js = tmp_path / "remote.json"
    artifact, data = art
    assert remote_bench(device, art, "loopback", "--data", data, "--json", js) == 0
    r = json.loads(js.read_text())
    assert r["remote"]["host"] == "loopback" and r["remote"]["removed"]
    assert _left_on_device() == before
    assert r["latency_ms"]["n"] == 20 and r["method"]["model_only"] == "onnxruntime InferenceSession.run()"
    assert r["runtime_versions"]["onnxruntime"] and r["machine"]["cpu"] and r["peak_memory_mb"] > 0
    local = tmp_path / "local.json"
    assert main(["bench", str(artifact), "--data", str(data), *FAST, "--memory-runs", "0",
                 "--json", str(local)]) in (0, 3)
    lo = json.loads(local.read_text())
    assert abs(r["miou"] - lo["miou"]) < 1e-9  # the same class maps, predicted on the device
    # within the noise of a local bench on the same machine: the same order, not 10x off
    a, b = r["latency_ms"]["p50"], lo["latency_ms"]["p50"]
    assert max(a, b) / min(a, b) < 3 or abs(a - b) < 1.0, (a, b)
    out = capsys.readouterr().out
    assert "on loopback" in out and "was removed" in out


@pytest.mark.parametrize("host, words", [
    ("no-such-host.invalid", "host name is unknown"),
    ("nobody-home", "cannot reach 'nobody-home'"),
    ("nokey", "refused the login"),
    ("stranger", "could not verify the device's host key"),
])
def test_connection_failures_are_one_line(device, art, capsys, host, words):
    before = _left_on_device()
    assert remote_bench(device, art, host) == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("remote:")]
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0], err
    assert _left_on_device() == before


def test_a_device_without_the_runtime_says_so_and_is_cleaned(device, art, capsys):
    before = _left_on_device()
    assert remote_bench(device, art, "loopback", python=device["bare"]) == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("remote:")]
    assert len(err) == 1 and "has no onnxruntime" in err[0] and "install the runtime there" in err[0], err
    assert _left_on_device() == before


def test_a_missing_python_and_a_timeout_are_one_line(device, art, capsys):
    before = _left_on_device()
    assert remote_bench(device, art, "loopback", python="/nonexistent/python3") == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("remote:")]
    assert len(err) == 1 and "--remote-python" in err[0], err
    assert remote_bench(device, art, "loopback", "--remote-timeout", "0.5", "--runs", "100000") == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("remote:")]
    assert len(err) == 1 and "did not finish" in err[0], err
    time.sleep(0.5)
    assert _left_on_device() == before


def test_a_device_fleet_runs_in_parallel_into_one_table(device, art, tmp_path, capsys):
    artifact, data = art
    ckpt = Path(artifact).parent / "t.pt"
    fleet = tmp_path / "devices.yaml"
    fleet.write_text(f"devices:\n"
                     f"  - name: pi-one\n    host: loopback\n    targets: [onnxruntime-cpu]\n"
                     f"    python: {device['python']}\n    ssh_config: {device['config']}\n    threads: 1\n"
                     f"    budget: {{p99_ms: 10000, memory_mb: 100000}}\n"
                     f"  - name: pi-two\n    host: loopback\n    targets: [onnxruntime-cpu]\n"
                     f"    python: {device['python']}\n    ssh_config: {device['config']}\n    threads: 1\n"
                     f"    budget: {{p99_ms: 10000, memory_mb: 100000}}\n")
    js, page = tmp_path / "fleet.json", tmp_path / "fleet.html"
    assert main(["bench", "--matrix", "--devices", str(fleet), "--model", str(ckpt), "--data", str(data),
                 "--runs", "5", "--warmup", "1", "--json", str(js), "--html", str(page)]) == 0
    rows = json.loads(js.read_text())["devices"]
    assert [(r["device"], r["target"], r["budget"]) for r in rows] == [("pi-one", "onnxruntime-cpu", "pass"),
                                                                        ("pi-two", "onnxruntime-cpu", "pass")]
    assert rows[0]["result"]["miou"] == rows[1]["result"]["miou"]
    out = capsys.readouterr().out
    assert "| device | target | precision |" in out and "| pi-two | onnxruntime-cpu |" in out
    assert "pi-one" in page.read_text()


@pytest.mark.parametrize("text, words", [
    ("- {name: a}\n", "needs a name and a host"),
    ("- {name: a, host: h, targets: [warp-drive]}\n", "unknown target 'warp-drive'"),
    ("- {name: a, host: h, targets: [onnxruntime-cpu], colour: red}\n", "unknown key(s) colour"),
    ("devices: [\n", "cannot be read"),
])
def test_a_bad_devices_file_is_one_line(tmp_path, capsys, text, words):
    fleet = tmp_path / "devices.yaml"
    fleet.write_text(text)
    assert main(["bench", "--matrix", "--devices", str(fleet)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


def test_every_runner_is_self_contained():
    """Each unit's runner script imports only the standard library, numpy, its runtime and (for
    the demo and its pre-processing only, inside functions) OpenCV."""
    import ast

    from edgeseg.formats import get_unit, unit_names

    allowed = {"json", "os", "platform", "struct", "sys", "time", "zlib", "numpy", "cv2"}
    for name in unit_names():
        unit = get_unit(name)
        if not unit.plain_module:
            continue
        tree = ast.parse(unit.runner_script())
        imported = {(a.name if isinstance(n, ast.Import) else n.module).split(".")[0]
                    for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                    for a in (n.names if isinstance(n, ast.Import) else [n])}
        extra = imported - allowed - set(unit.runtime_modules) - {"onnxruntime", "openvino", "ncnn"}
        assert not extra and "edgeseg" not in imported and "torch" not in imported, (name, imported)


def test_a_runner_that_dies_mid_run_is_one_line_and_cleaned(device, art, tmp_path, capsys):
    """A device process killed during the timed runs (out of memory, a crash): exit 2, one line."""
    dying = tmp_path / "dying-python"
    dying.write_text(f"#!/bin/sh\n{device['python']} -c 'import time; time.sleep(0.3)'\nkill -9 $$\n")
    dying.chmod(0o755)
    before = _left_on_device()
    assert remote_bench(device, art, "loopback", python=str(dying)) == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("remote:")]
    assert len(err) == 1 and "connection to 'loopback' was lost during the benchmark" in err[0], err
    assert _left_on_device() == before


def test_a_copy_that_times_out_half_way_leaves_nothing(device):
    """The folder's name is chosen here, so a copy whose ssh times out after the device made
    the folder (a slow link, a loaded device) is still removed."""
    from edgeseg.ssh import Remote, RemoteTimeout, device_folder, pack

    class SlowLink(Remote):
        def run(self, command, **kw):
            p = super().run(command, **kw)
            if kw.get("what") == "the copy":  # the device did the work; the answer came too late
                raise RemoteTimeout("the copy timed out")
            return p

    before = _left_on_device()
    remote = SlowLink("loopback", ssh_config=device["config"], timeout=30)
    with pytest.raises(RemoteTimeout):
        with device_folder(remote, pack({"x.txt": b"x"})):
            pass
    assert _left_on_device() == before
    with device_folder(Remote("loopback", ssh_config=device["config"]), pack({"x.txt": b"x"})) as where:
        assert (Path(where["folder"]) / "x.txt").read_bytes() == b"x" and Path(where["folder"]).stat().st_mode & 0o77 == 0
    assert where["removed"] and _left_on_device() == before


# -- edgeseg demo --remote

def _left_demo() -> list[str]:
    return sorted(p.name for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("edgeseg-demo.*"))


@pytest.fixture(scope="module")
def cv_python(device):
    """A "device" Python with numpy, onnxruntime and OpenCV (what a camera demo needs there)."""
    import cv2

    here = Path(cv2.__file__).parents[1]
    libs = [p.name for p in here.glob("opencv*.libs")]
    return str(loopback_device.device_python(device["root"] / "cv-env",
                                             ["numpy", "numpy.libs", "onnxruntime", "cv2", *libs]))


@pytest.fixture(scope="module")
def clip(art, tmp_path_factory):
    """A lossless video "on the device" made of the dataset's images."""
    import cv2

    _, data = art
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    frames = sorted((Path(data) / "val").glob("*.png"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 5, (W, H))
    for f in frames:
        writer.write(cv2.imread(str(f)))
    writer.release()
    return path, len(frames)


def remote_demo(device, art, python, source, *extra):
    artifact, _ = art
    return main(["demo", "--remote", "loopback", "--ssh-config", str(device["config"]), "--remote-python", python,
                 "--artifact", str(artifact), "--source", str(source), "--no-window", "--threads", "1",
                 *map(str, extra)])


def test_remote_demo_records_the_devices_predictions(device, art, cv_python, clip, tmp_path, capsys):
    """The class maps drawn here are the ones the model predicted on the device: the lossless
    recording in mask mode holds exactly the local predictor's colours for every frame."""
    import cv2

    from edgeseg.demo.render import palette_bgr
    from edgeseg.formats import load_predictor

    video, n = clip
    before = _left_demo()
    out, js = tmp_path / "out.avi", tmp_path / "s.json"
    assert remote_demo(device, art, cv_python, video, "--mode", "mask", "--no-hud", "--record", out,
                       "--json", js) == 0, capsys.readouterr().err
    s = json.loads(js.read_text())
    assert s["frames"] == n and s["remote"]["removed"] and s["remote"]["runtime_versions"]["onnxruntime"]
    assert s["latency_ms"]["model"]["p50"] > 0 and _left_demo() == before
    predictor = load_predictor(art[0], threads=1)
    lut = palette_bgr(predictor.manifest["colors"])
    src, rec = cv2.VideoCapture(str(video)), cv2.VideoCapture(str(out))
    for _ in range(n):
        ok1, frame = src.read()
        ok2, drawn = rec.read()
        assert ok1 and ok2
        expected = lut[predictor.predict(np.ascontiguousarray(frame[:, :, ::-1]))]
        assert np.array_equal(drawn, expected)
    assert not rec.read()[0]
    assert "on loopback" in capsys.readouterr().out


def test_remote_demo_failures_are_one_line_and_cleaned(device, art, cv_python, clip, tmp_path, capsys):
    video, _ = clip
    before = _left_demo()
    cases = [(device["python"], video, "has no cv2"), (cv_python, tmp_path / "no-such.avi", "cannot open the source"),
             ("/nonexistent/python3", video, "--remote-python")]
    for python, source, words in cases:
        record = tmp_path / "r.avi"
        assert remote_demo(device, art, python, source, "--record", record) == 2
        err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("remote:")]
        assert len(err) == 1 and words in err[0], err
        assert not record.exists() and not list(tmp_path.glob(".r.*"))  # no half-written recording
    assert _left_demo() == before


def test_local_and_remote_peaks_of_one_artifact_agree(device, art, tmp_path):
    """A local bench measures memory with the runner bench --remote sends: the same figure."""
    from edgeseg.bench.memory import measure_peak_memory

    artifact, _ = art
    js = tmp_path / "remote.json"
    assert remote_bench(device, art, "loopback", "--json", js) == 0
    remote = json.loads(js.read_text())["peak_memory_mb"]
    local = measure_peak_memory(artifact, runs=20, threads=1)
    assert "torch" not in local["imported"]
    assert abs(local["peak_mb"] - remote) <= 0.05 * remote, (local["peak_mb"], remote)
