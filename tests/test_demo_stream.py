"""edgeseg demo on a real network stream: a local HTTP server sends MJPEG (what many IP
cameras serve) and OpenCV's FFmpeg backend reads it. Checks the live path end to end:
newest-frame mode, recording, reconnecting when the stream drops, and giving up with a
clear message and a non-zero exit, in bounded time, when the server is gone (keeping the
frames recorded until then)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest
import torch

from edgeseg.build import build
from edgeseg.cli.main import main
from edgeseg.data.info import CAMVID
from edgeseg.models import create_model
from edgeseg.train.checkpoint import make_checkpoint, save_checkpoint

H, W = 96, 128  # stream frames; the artifact is 64x96 (frames are scaled down and padded)


class MJPEGStream:
    """``multipart/x-mixed-replace`` JPEG stream on 127.0.0.1; each connection gets
    ``frames_per_connection`` frames at ``fps``, then the server closes it. With
    ``shutdown_after_first`` the whole server goes away after the first connection."""

    def __init__(self, frames_per_connection: int, fps: float = 30.0, shutdown_after_first: bool = False):
        stream = self
        self.connections = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                stream.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in range(frames_per_connection):
                    img = np.zeros((H, W, 3), np.uint8)
                    img[:, : (i * 7) % W] = (40, 160, 90)
                    jpg = cv2.imencode(".jpg", img)[1].tobytes()
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                         % (len(jpg), jpg))
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    time.sleep(1.0 / fps)
                if shutdown_after_first:
                    threading.Thread(target=stream.close, daemon=True).start()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_stream")
    torch.manual_seed(0)
    ckpt = root / "unet.pt"
    save_checkpoint(make_checkpoint(create_model("unet", 11, base_channels=8), CAMVID, (64, 96)), ckpt)
    return build(ckpt, "onnxruntime-cpu", out=root / "art", parity_images=2)


def frame_count(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_http_stream_headless_record(artifact, tmp_path):
    stream = MJPEGStream(frames_per_connection=1000)
    try:
        out, summary = tmp_path / "live.avi", tmp_path / "s.json"
        rc = main(["demo", "--artifact", str(artifact), "--source", stream.url, "--no-window", "--record", str(out),
                   "--max-frames", "15", "--json", str(summary)])
    finally:
        stream.close()
    assert rc == 0
    s = json.loads(summary.read_text())
    assert s["frames"] == 15 and s["drop_frames"] is True and s["stopped"] == "max frames"
    assert s["source"].startswith("stream") or stream.url in s["source"]
    assert frame_count(out) == 15


def test_http_stream_reconnects_after_drop(artifact, tmp_path, capsys):
    stream = MJPEGStream(frames_per_connection=8)
    try:
        summary = tmp_path / "s.json"
        rc = main(["demo", "--artifact", str(artifact), "--source", stream.url, "--no-window", "--max-frames", "14",
                   "--json", str(summary)])
    finally:
        stream.close()
    assert rc == 0, capsys.readouterr().err
    s = json.loads(summary.read_text())
    assert s["frames"] == 14 and s["reconnects"] >= 1 and stream.connections >= 2
    assert "reconnecting" in capsys.readouterr().err


def test_http_stream_gone_gives_up_nonzero(artifact, tmp_path, capsys):
    stream = MJPEGStream(frames_per_connection=6, shutdown_after_first=True)
    out = tmp_path / "gone.avi"
    t0 = time.monotonic()
    rc = main(["demo", "--artifact", str(artifact), "--source", stream.url, "--no-window", "--record", str(out),
               "--retries", "2"])
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    assert rc != 0 and took < 30
    assert "did not come back after 2 retries" in err and "retry 2/2" in err
    # what was shown before the stream died is kept as a complete file, and said so
    assert out.is_file() and 1 <= frame_count(out) <= 6 and "kept the recording" in err
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_flaky_stream_reconnects_a_bounded_number_of_times(artifact, tmp_path, capsys):
    """A stream that gives 4 frames per connection and drops: --retries 2 allows two
    reconnects in a row (none stays up long enough to count as healthy), then exit 3
    naming the source, instead of reconnecting forever."""
    stream = MJPEGStream(frames_per_connection=4)
    t0 = time.monotonic()
    try:
        rc = main(["demo", "--artifact", str(artifact), "--source", stream.url, "--no-window", "--retries", "2",
                   "--json", str(tmp_path / "s.json")])
    finally:
        stream.close()
    err = capsys.readouterr().err
    assert rc == 3 and time.monotonic() - t0 < 60, err
    assert f"stream {stream.url} keeps dropping: 2 reconnects in a row" in err
    assert "(2/2 in a row)" in err and stream.connections == 3
    assert not (tmp_path / "s.json").exists()
