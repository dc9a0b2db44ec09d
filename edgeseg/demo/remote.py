"""``edgeseg demo --remote HOST --artifact A --source SRC``: the model runs on the user's device,
on the device's own camera or file, and the overlay comes back here.

The artifact and one runner file (the format unit's plain-runtime half, as for ``bench
--remote``) go to a temporary folder on the device over the system ssh. There the runner reads
frames with OpenCV, pre-processes them with the same code ``Predictor.preprocess`` runs, runs
the model and streams each frame (JPEG) with its class map (zlib) and timings back over the
ssh connection. Here each class map is post-processed (crop, resize to the frame) and drawn by
the demo's own renderer into the window and/or the ``--record`` file. The folder on the device
is removed whatever happens. The device needs Python 3, numpy, the runtime and OpenCV
(``opencv-python-headless``).
"""

from __future__ import annotations

import json
import queue
import shlex
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np

from edgeseg.ssh import Remote, RemoteError, artifact_payload, device_folder

#: a hostile or broken device cannot make us allocate without bound
MAX_HEADER = 1 << 16
MAX_PAYLOAD = 64 << 20
MAX_SIDE = 16384
_END = object()


def _payload(artifact: Path, manifest: dict, script: str) -> bytes:
    from edgeseg.data.transforms import MEAN_RGB_U8

    # the runner pads with the colour Predictor.preprocess pads with
    sent = {**manifest, "input": {**manifest["input"], "pad_rgb": list(MEAN_RGB_U8)}}
    return artifact_payload(artifact, manifest, {"manifest.json": json.dumps(sent).encode(),
                                                 "runner.py": script.encode()})


def _read_exact(stream, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        b = stream.read(n - got)
        if not b:
            return None
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def _reader(stream, out: queue.Queue) -> None:
    """Records from the device's stdout onto ``out``: (header, payload), then _END."""
    try:
        while True:
            size = _read_exact(stream, 4)
            if size is None:
                break
            (n,) = struct.unpack(">I", size)
            if n > MAX_HEADER:
                raise RemoteError(f"the device sent a {n}-byte record header: not an edgeseg runner stream")
            header = json.loads(_read_exact(stream, n) or b"null")
            if not isinstance(header, dict):
                raise RemoteError("the device's stream ended inside a record")
            body = int(header.get("jpeg", 0)) + int(header.get("packed", 0))
            if not 0 <= body <= MAX_PAYLOAD:
                raise RemoteError(f"the device announced a {body}-byte frame: not an edgeseg runner stream")
            payload = _read_exact(stream, body) if body else b""
            if payload is None:
                raise RemoteError("the device's stream ended inside a frame")
            out.put((header, payload))
    except (RemoteError, ValueError) as exc:
        out.put(exc if isinstance(exc, RemoteError) else RemoteError(f"the device sent a garbled record ({exc})"))
    out.put(_END)


def _decode(header: dict, payload: bytes):
    """(frame BGR, class map at the model's output size) of one record."""
    h, w = (int(v) for v in header["classes"])
    sizes = [h, w, *(int(v) for v in header["orig"]), *(int(v) for v in header["content"])]
    if not all(0 < v <= MAX_SIDE for v in sizes):
        raise RemoteError(f"the device sent a frame of impossible size {sizes}: not an edgeseg runner stream")
    jpeg = int(header["jpeg"])
    frame = cv2.imdecode(np.frombuffer(payload[:jpeg], np.uint8), cv2.IMREAD_COLOR)
    raw = zlib.decompress(payload[jpeg:], bufsize=h * w)
    if frame is None or len(raw) != h * w:
        raise RemoteError("the device sent a frame that does not decode")
    return frame, np.frombuffer(raw, np.uint8).reshape(h, w)


def run_remote_demo(artifact, host: str, *, source: str = "0", record=None, window: bool = False,
                    max_frames: int | None = None, alpha: float = 0.5, mode: str = "overlay", hud: bool = True,
                    threads: int | None = None, python: str = "python3", ssh_config=None, timeout: float = 600,
                    stall_timeout: float = 30.0, json_path=None, window_backend: str = "auto",
                    log=lambda s: None) -> dict:
    """Run ``artifact`` on ``host`` against ``source`` there; the summary of :func:`run_demo`'s shape."""
    from edgeseg.demo.pipeline import ema_fps, percentiles, present
    from edgeseg.demo.render import Recorder, Renderer, open_window
    from edgeseg.formats import get_unit, read_manifest
    from edgeseg.formats.predictor import Predictor

    artifact = Path(artifact)
    manifest = read_manifest(artifact)
    script = get_unit(manifest["runtime"]).runner_script()
    post = Predictor(artifact, manifest)  # post-processing only: no runtime needed here
    post.output_kind = "classes"  # the device sends class maps
    name = " ".join(str(v) for v in ((manifest.get("model") or {}).get("name", ""), manifest.get("target", ""),
                                     manifest.get("precision", "")) if v)
    renderer = Renderer(manifest["classes"], manifest["colors"], alpha=alpha, mode=mode, hud=hud,
                        model_name=f"{name} on {host}")
    recorder = Recorder(record) if record else None
    win = open_window("edgeseg demo", window_backend) if window else None
    remote = Remote(host, ssh_config=ssh_config, timeout=timeout)
    payload = _payload(artifact, manifest, script)
    stats = {k: [] for k in ("pre_ms", "model_ms", "post_ms", "render_ms")}
    shown, stopped, end, ok = 0, "end of source", None, False
    t_start = time.perf_counter()
    t_first = t_last = None
    fps_ema = 0.0
    log(f"remote: copying {len(payload) / 1e6:.1f} MB to {host}")
    try:
        with device_folder(remote, payload, "demo", log) as where:
            cmd = (f"cd {shlex.quote(where['folder'])} && {python} runner.py --source {shlex.quote(str(source))} "
                   f"--frames {int(max_frames or 0)} --threads {int(threads or 0)}")
            log(f"remote: running {name} on {host} against its {source!r}")
            proc = remote.popen(cmd)
            records: queue.Queue = queue.Queue(maxsize=8)
            threading.Thread(target=_reader, args=(proc.stdout, records), daemon=True).start()
            err_chunks: list[bytes] = []  # drained as it comes, so a chatty device never blocks
            err_thread = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
            err_thread.start()
            streamed = False
            try:
                try:
                    while True:
                        if win is not None and win.poll_key(1) == "q":
                            stopped = "quit"
                            break
                        try:
                            item = records.get(timeout=0.05 if win is not None else stall_timeout)
                        except queue.Empty:
                            if win is not None and time.perf_counter() - (t_last or t_start) < stall_timeout:
                                continue
                            raise RemoteError(f"'{host}' sent no frame for {stall_timeout:g} s: the source or the "
                                              f"device stalled") from None
                        if item is _END:
                            break
                        if isinstance(item, RemoteError):
                            raise item
                        header, body = item
                        if header.get("error") or header.get("end"):
                            end = header
                            continue
                        frame, classes = _decode(header, body)
                        tp = time.perf_counter()
                        cls = post.postprocess(classes, {"orig": tuple(header["orig"]),
                                                         "content": tuple(header["content"])})
                        t0 = time.perf_counter()
                        pic = renderer.compose(frame, cls, {"fps": fps_ema, "model_ms": header["model_ms"],
                                                            "dropped": 0})
                        present(pic, recorder, win)
                        t1 = time.perf_counter()
                        if t_last is not None:
                            fps_ema = ema_fps(fps_ema, t1 - t_last)
                        t_first = t1 if t_first is None else t_first
                        t_last = t1
                        shown += 1
                        for key, v in (("pre_ms", header["pre_ms"]), ("model_ms", header["model_ms"]),
                                       ("post_ms", (t0 - tp) * 1e3), ("render_ms", (t1 - t0) * 1e3)):
                            stats[key].append(float(v))
                except KeyboardInterrupt:  # Ctrl-C: a clean stop, the recording is kept
                    stopped = "interrupted"
                streamed = stopped == "end of source"  # the device closed its stream itself
            finally:
                if not streamed:  # we stopped first (quit, Ctrl-C, a stall, a bad record)
                    proc.kill()
                try:
                    rc = proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = proc.wait()
                err_thread.join(5)
                err = b"".join(err_chunks).decode("utf-8", "replace").strip().splitlines()
            _check_end(host, python, source, end, rc, err, stopped)
            if max_frames and shown >= max_frames:
                stopped = "max frames"
        ok = True
    finally:
        if win is not None:
            win.close()
        saved = recorder.close(ok=ok and shown > 0) if recorder is not None else None
    steady = (t_last - t_first) if t_first is not None else 0.0
    summary = {
        "source": f"{source} on {host}", "artifact": str(artifact), "model": name, "stopped": stopped,
        "frames": shown, "captured": (end or {}).get("frames", shown), "dropped": 0, "workers": 1,
        "fps": round((shown - 1) / steady, 3) if shown >= 10 and steady > 0 else None,
        "wall_s": round(time.perf_counter() - t_start, 3),
        "latency_ms": {"model": percentiles(stats["model_ms"]), "pre": percentiles(stats["pre_ms"]),
                       "post": percentiles(stats["post_ms"]), "render": percentiles(stats["render_ms"]),
                       "e2e": percentiles([])},
        "record": str(saved) if saved else None, "screenshots": [],
        "remote": {"host": host, "python": python, "removed": where["removed"], "machine": (end or {}).get("machine"),
                   "runtime_versions": (end or {}).get("runtime_versions"),
                   "note": "model and pre-processing ran on the device, post-processing and drawing here"},
    }
    if json_path:
        from edgeseg.files import atomic_write_text

        atomic_write_text(Path(json_path), json.dumps(summary, indent=2) + "\n")
    return summary


def _check_end(host: str, python: str, source: str, end: dict | None, rc: int, err: list[str], stopped: str) -> None:
    """One line for a run that did not end well on the device."""
    if stopped in ("quit", "interrupted"):
        return
    if end and end.get("error") == "source":
        raise RemoteError(f"'{host}' cannot open the source {source!r} ({end.get('message')}): give a camera index "
                          f"or a file path on the device")
    missing = next((json.loads(ln) for ln in err if ln.startswith("{\"error\": \"missing\"")), None)
    if missing:
        what = "opencv-python-headless" if missing.get("module") == "cv2" else "the runtime"
        raise RemoteError(f"'{host}' has no {missing.get('module')} for {python} ({missing.get('message')}): "
                          f"install {what} there (docs/remote.md)")
    if rc == 127:
        raise RemoteError(f"the demo failed on '{host}': '{python}' is not on the device: pass --remote-python")
    if end is None or rc != 0:
        tail = err[-1] if err else "no message"
        raise RemoteError(f"the demo failed on '{host}' (exit {rc}): {tail}" if rc not in (None, 255) else
                          f"the connection to '{host}' was lost during the demo ({tail})")


__all__ = ["run_remote_demo"]
