"""edgeseg demo: the headless pipeline with --record (frame count, size, exact overlay
colours against Predictor.predict, alpha blend math), the summary, the one-slot live
buffer, a real window under Xvfb (keys sent with xdotool), and the failure paths
(missing file, camera that does not exist: non-zero exit, bounded time, no partial file).

One tiny untrained U-Net (base_channels 8) built for onnxruntime-cpu fp32 at 64x96, and
short synthetic CamVid-like videos of 64x96 frames.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgeseg.build import build
from edgeseg.cli.main import main
from edgeseg.data.info import CAMVID
from edgeseg.demo import Capture, CaptureError, DemoConfig, Recorder, Renderer, open_source, run_demo
from edgeseg.demo.render import palette_bgr
from edgeseg.models import create_model
from edgeseg.formats import load_predictor
from edgeseg.train.checkpoint import make_checkpoint, save_checkpoint

from helpers import make_camvid_sample

REPO = Path(__file__).resolve().parents[1]
H, W = 64, 96


def write_video(path: Path, n: int, seed: int = 0, fps: float = 10.0) -> Path:
    rng = np.random.default_rng(seed)
    frames = [cv2.cvtColor(make_camvid_sample(rng, (H, W))[0], cv2.COLOR_RGB2BGR) for _ in range(min(n, 20))]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (W, H))
    assert vw.isOpened()
    for i in range(n):
        vw.write(frames[i % len(frames)])
    vw.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    torch.manual_seed(0)
    model = create_model("unet", 11, base_channels=8)
    ckpt = root / "unet.pt"
    save_checkpoint(make_checkpoint(model, CAMVID, (H, W)), ckpt)
    art = build(ckpt, "onnxruntime-cpu", out=root / "art", parity_images=2)
    video = write_video(root / "clip.mp4", 20)
    return root, art, video


def run_cli(args) -> int:
    return main(["demo", *map(str, args)])


def expected_maps(art: Path, frames) -> list[np.ndarray]:
    pred = load_predictor(art, threads=1)
    return [pred.predict(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)) for f in frames]


def test_record_alpha1_exact_colours_and_summary(work, tmp_path, capsys):
    root, art, video = work
    out, js = tmp_path / "out.avi", tmp_path / "s.json"
    rc = run_cli(["--artifact", art, "--source", video, "--no-window", "--record", out, "--max-frames", 12,
                  "--alpha", 1, "--no-hud", "--json", js])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "12 frames" in printed and "FPS" in printed and "p99" in printed
    s = json.loads(js.read_text())
    assert s["frames"] == 12 and s["dropped"] == 0 and s["drop_frames"] is False and s["fps"] > 0
    for k in ("model", "e2e", "pre", "post", "render"):
        lat = s["latency_ms"][k]
        assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"]
    assert s["record"] == str(out)
    recorded = read_video(out)
    assert len(recorded) == 12 and recorded[0].shape == (H, W, 3)
    inputs = read_video(video)[:12]
    lut = palette_bgr(CAMVID.colors)
    for got, cls in zip(recorded, expected_maps(art, inputs)):
        np.testing.assert_array_equal(got, lut[cls])  # FFV1 is lossless: exactly the palette colours
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_no_frame_rate_over_a_handful_of_frames(work, tmp_path, capsys):
    root, art, video = work
    js = tmp_path / "s.json"
    assert run_cli(["--artifact", art, "--source", video, "--no-window", "--max-frames", 3, "--json", js]) == 0
    assert json.loads(js.read_text())["fps"] is None
    out = capsys.readouterr().out
    assert "3 frames" in out and "n/a (under 10 frames) FPS" in out


def test_openvino_argmax_in_graph_draws_the_same_classes(work, tmp_path):
    """On OpenVINO the demo appends the argmax to the graph (uint8 ids out); the picture must
    be exactly what the plain predictor's argmax over the logits gives."""
    pytest.importorskip("openvino")
    root, _, video = work
    art = build(root / "unet.pt", "openvino-cpu", out=tmp_path / "ov", parity_images=2)
    inputs = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in read_video(video)[:8]]
    plain, fused = load_predictor(art, threads=1), load_predictor(art, threads=1)
    assert fused.fuse_argmax() and fused.output_kind == "classes"
    assert fused.fuse_preprocessing() and fused.raw_input
    # onnxruntime: ArgMax appended to the ONNX graph too; its input stays the float tensor
    ort, ort_plain = load_predictor(work[1], threads=1), load_predictor(work[1], threads=1)
    assert ort.fuse_argmax() and not ort.fuse_preprocessing()
    for img in inputs[:3]:
        np.testing.assert_array_equal(ort.predict(img), ort_plain.predict(img))
    for img in inputs:
        x, meta = fused.preprocess(img)
        assert x.dtype == np.uint8 and x.shape == (1, H, W, 3)
        y = fused.infer(x)
        assert y.dtype == np.uint8 and y.size == H * W
        np.testing.assert_array_equal(fused.postprocess(y, meta), plain.predict(img))
    out, js = tmp_path / "ov.avi", tmp_path / "ov.json"
    assert run_cli(["--artifact", art, "--source", video, "--no-window", "--record", out, "--max-frames", 8,
                    "--alpha", 1, "--no-hud", "--json", js]) == 0
    summary = json.loads(js.read_text())
    assert summary["argmax_in_graph"] is True and summary["preprocessing_in_graph"] is True
    # two infer requests on one compiled model by default; frames still come out in order
    assert summary["workers"] == 2 and summary["shared_compiled_model"] is True
    lut = palette_bgr(CAMVID.colors)
    for got, img in zip(read_video(out), inputs):
        np.testing.assert_array_equal(got, lut[plain.predict(img)])


def test_record_alpha_half_blend_and_side_mode(work, tmp_path):
    root, art, video = work
    out = tmp_path / "half.mkv"
    assert run_cli(["--artifact", art, "--source", video, "--no-window", "--record", out, "--max-frames", 5,
                    "--alpha", 0.5, "--no-hud", "--workers", 1]) == 0
    recorded = read_video(out)
    inputs = read_video(video)[:5]
    lut = palette_bgr(CAMVID.colors)
    assert len(recorded) == 5
    for got, frame, cls in zip(recorded, inputs, expected_maps(art, inputs)):
        want = 0.5 * frame.astype(np.float64) + 0.5 * lut[cls].astype(np.float64)
        assert np.abs(got.astype(np.float64) - want).max() <= 1.0
    # mp4 with the HUD and legend, side by side: twice as wide, every frame of the file
    out2 = tmp_path / "side.mp4"
    assert run_cli(["--artifact", art, "--source", video, "--no-window", "--record", out2, "--mode", "side"]) == 0
    rec2 = read_video(out2)
    assert len(rec2) == 20 and rec2[0].shape == (H, 2 * W, 3)


def test_renderer_legend_and_hud_draw():
    r = Renderer(CAMVID.classes, CAMVID.colors, alpha=1.0)
    frame = np.zeros((240, 320, 3), np.uint8)
    cls = np.full((240, 320), 3, np.uint8)
    pic = r.compose(frame, cls, {"fps": 12.3, "model_ms": 4.5, "e2e_ms": 9.9})
    plain = Renderer(CAMVID.classes, CAMVID.colors, alpha=1.0, hud=False).compose(frame, cls)
    assert (plain == palette_bgr(CAMVID.colors)[3]).all()
    assert (pic != plain).any(axis=2)[:, 200:].any()    # legend at the right
    assert (pic != plain).any(axis=2)[200:, :100].any()  # HUD bottom left
    assert r.cycle_mode() == "mask" and r.cycle_mode() == "side" and r.cycle_mode() == "overlay"


def test_latest_slot_drops_old_frames(tmp_path):
    for i in range(30):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((8, 8, 3), i, np.uint8))
    cap = Capture(open_source(tmp_path), mode="latest").start()
    got = []
    while True:
        time.sleep(0.02)  # a slow consumer
        f = cap.get(timeout=5)
        if f is None:
            break
        got.append(f.index)
    cap.join()
    assert got == sorted(got) and got[-1] == 29
    assert cap.captured == 30 and cap.dropped == 30 - len(got) and cap.dropped > 0


def test_missing_file_one_line_nonzero(work, tmp_path):
    root, art, video = work
    out = tmp_path / "never.mp4"
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "edgeseg", "demo", "--artifact", str(art), "--source",
                        str(tmp_path / "nope.mp4"), "--no-window", "--record", str(out)],
                       capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert p.returncode != 0 and time.monotonic() - t0 < 30
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "does not exist" in lines[0] and "Traceback" not in p.stderr
    assert list(tmp_path.iterdir()) == []  # no recording, no partial file


def test_bad_camera_retries_then_nonzero(work, tmp_path):
    root, art, video = work
    out = tmp_path / "cam.mp4"
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "edgeseg", "demo", "--artifact", str(art), "--source", "9",
                        "--no-window", "--record", str(out)], capture_output=True, text=True, timeout=30,
                       cwd=tmp_path)
    took = time.monotonic() - t0
    assert p.returncode != 0, p.stdout
    assert "camera 9 cannot be opened after 4 tries" in p.stderr and "retry 3/3" in p.stderr
    assert took >= 3.0  # 0.5 + 1 + 2 s of backoff
    assert not out.exists() and not [q for q in tmp_path.iterdir() if "partial" in q.name]


def test_negative_camera_index_one_line_exit_2(work, tmp_path):
    # OpenCV 5 segfaults on VideoCapture(-1) (exit 139): the index is refused before OpenCV sees it
    root, art, video = work
    p = subprocess.run([sys.executable, "-m", "edgeseg", "demo", "--artifact", str(art), "--source", "-1",
                        "--no-window", "--record", str(tmp_path / "o.mp4")], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "camera index -1 is negative" in lines[0], p.stderr
    assert list(tmp_path.iterdir()) == []


def test_stalled_source_watchdog(work, tmp_path):
    """A source that never delivers: the watchdog ends the run instead of hanging."""
    root, art, video = work
    pred = [load_predictor(art, threads=1)]
    cfg = DemoConfig(artifact=art, source=str(video), window=False, first_frame_timeout_s=1.0)
    import edgeseg.demo.pipeline as pl

    class Stuck(Capture):
        def _run(self):
            self._opened.set()
            self._stop.wait()

    orig = pl.Capture
    pl.Capture = Stuck
    try:
        t0 = time.monotonic()
        with pytest.raises(CaptureError, match="no result for 1 s"):
            run_demo(cfg, predictors=pred)
        assert time.monotonic() - t0 < 5
    finally:
        pl.Capture = orig


def test_recorder_removes_partial_on_failure(tmp_path):
    r = Recorder(tmp_path / "x.mp4")
    r.write(np.zeros((H, W, 3), np.uint8))
    assert r.tmp.is_file()
    assert r.close(ok=False) is None
    assert list(tmp_path.iterdir()) == []


# -- a real window under Xvfb


def _free_display() -> int:
    for n in range(90, 140):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    pytest.skip("no free X display number")


def _screenshot(env) -> np.ndarray | None:
    p = subprocess.run(["import", "-window", "root", "ppm:-"], env=env, capture_output=True, timeout=10)
    if p.returncode != 0:
        return None
    img = cv2.imdecode(np.frombuffer(p.stdout, np.uint8), cv2.IMREAD_COLOR)
    return img


def _has_palette(img, colors_bgr, min_px=200) -> bool:
    return sum(int((img == np.array(c, np.uint8)).all(axis=2).sum()) for c in colors_bgr) >= min_px


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)")
def test_window_under_xvfb(work, tmp_path):
    if shutil.which("import") is None or shutil.which("xdotool") is None:
        pytest.skip("imagemagick (import) and xdotool are needed to look at the window")
    root, art, video = work
    long_video = write_video(tmp_path / "long.mp4", 400, fps=20.0)
    n = _free_display()
    xvfb = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {**os.environ, "DISPLAY": f":{n}"}
    demo = None
    try:
        for _ in range(50):
            if Path(f"/tmp/.X11-unix/X{n}").exists():
                break
            time.sleep(0.1)
        shots = tmp_path / "shots"
        shots.mkdir()
        demo = subprocess.Popen([sys.executable, "-m", "edgeseg", "demo", "--artifact", str(art), "--source",
                                 str(long_video), "--alpha", "1", "--workers", "1", "--screenshot-dir", str(shots)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lut = palette_bgr(CAMVID.colors)
        colors = [tuple(int(v) for v in lut[i]) for i in range(11)]
        seen = None
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline and demo.poll() is None:
            img = _screenshot(env)
            if img is not None and img.std() > 0 and _has_palette(img, colors):
                seen = img
                break
            time.sleep(0.3)
        assert seen is not None, "no window with overlay colours on the screen"
        assert seen.std() > 5  # not blank

        def key(k):
            subprocess.run(["xdotool", "search", "--name", "edgeseg demo", "windowfocus", "--sync", "key", k],
                           env=env, timeout=10, capture_output=True)

        key("space")  # pause
        key("m")      # overlay -> mask
        key("s")      # screenshot
        for _ in range(50):
            if list(shots.iterdir()):
                break
            time.sleep(0.1)
        key("q")
        out, err = demo.communicate(timeout=20)
        assert demo.returncode == 0, err
        assert "(quit)" in out
        saved = list(shots.glob("edgeseg-demo-*.png"))
        assert saved and cv2.imread(str(saved[0])).shape[:2] == (H, W)
    finally:
        if demo is not None and demo.poll() is None:
            demo.kill()
            demo.wait()
        xvfb.terminate()
        xvfb.wait(5)


def test_no_model_and_empty_zoo_says_what_to_give(work, tmp_path, monkeypatch, capsys):
    root, art, video = work
    import edgeseg.zoo as zoo
    from edgeseg.errors import ModelError

    def empty(*args, **kwargs):
        raise ModelError("the zoo is empty: give a checkpoint path")

    monkeypatch.setattr(zoo, "default_model_name", empty)
    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    assert run_cli(["--source", video, "--no-window"]) != 0
    err = capsys.readouterr().err
    assert "--artifact" in err and "--model" in err


def test_model_is_built_once_into_the_cache(work, tmp_path, monkeypatch):
    root, art, video = work
    from edgeseg.demo import resolve_artifact

    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    calls = []
    import edgeseg.build as b

    real = b.build
    monkeypatch.setattr(b, "build", lambda *a, **k: calls.append(1) or real(*a, **{**k, "parity_images": 1}))
    first = resolve_artifact(model=str(root / "unet.pt"), target="onnxruntime-cpu")
    again = resolve_artifact(model=str(root / "unet.pt"), target="onnxruntime-cpu")
    assert first == again == tmp_path / "cache" / "artifacts" / "unet-onnxruntime-cpu-fp32"
    assert len(calls) == 1 and (first / "manifest.json").is_file()


def test_runtime_native_logs_stay_off_the_terminal(tmp_path):
    """LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." from C++ when the
    demo loads a TFLite artifact; the demo keeps it off stderr (edgeseg --verbose shows it)."""
    pytest.importorskip("litert_torch")
    from helpers import make_camvid, tiny_checkpoint

    data = make_camvid(tmp_path / "camvid", 2, 2, (64, 96))
    art = build(tiny_checkpoint(tmp_path / "t.pt"), "coral", out=tmp_path / "coral", data=data, calib_images=2,
                parity_images=2, allow_drop=True)
    p = subprocess.run([sys.executable, "-m", "edgeseg", "demo", "--artifact", str(art), "--source",
                        str(data / "val"), "--no-window", "--json", str(tmp_path / "s.json")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "XNNPACK" not in p.stderr and "INFO:" not in p.stderr, p.stderr
    assert json.loads((tmp_path / "s.json").read_text())["frames"] == 2
