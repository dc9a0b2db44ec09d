"""The demo pipeline: capture thread -> inference workers -> renderer (main thread).

::

    Capture (1 thread)          Workers (N threads, one Predictor each)   main thread
    decode -> newest-frame slot --> BGR->RGB, preprocess, infer ---------> reorder, postprocess
             (live) or bounded                                            (argmax), colour, blend,
             queue (files)                                                HUD, legend, record,
                                                                          window, keys

Decode, post-processing and drawing run in other threads than a given model call, so
they overlap it; with ``workers=2`` two model calls overlap as well (each Predictor
has its own session / infer request and ``threads`` intra-op threads). Results are
shown in capture order: files process every frame in order; a live source shows the
newest result and skips a result older than one already shown.

:func:`run_demo` returns the summary (frames, FPS, latency percentiles).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgeseg.demo.capture import Capture, CaptureError, open_source
from edgeseg.demo.render import MODES, Recorder, Renderer, open_window
from edgeseg.errors import EdgesegError, Terminated

#: the fewest frames the summary gives a frame rate for
MIN_FRAMES_FOR_FPS = 10

_END = object()


@dataclass
class DemoConfig:
    artifact: Path
    source: str = "0"
    window: bool = True
    record: Path | None = None
    max_frames: int | None = None
    alpha: float = 0.5
    mode: str = "overlay"
    hud: bool = True
    workers: int | None = None          #: infer requests (default: load_predictors' choice)
    threads: int | None = None          #: intra-op threads (default: the runtime's / cores / workers)
    device: str | None = None
    drop: bool | None = None            #: keep only the newest frame (default: live sources only)
    retries: int = 3
    backoff: tuple = (0.5, 1.0, 2.0)
    first_frame_timeout_s: float = 30.0  #: watchdog before the first result (model warm-up)
    stall_timeout_s: float = 10.0        #: watchdog between results
    screenshot_dir: Path = field(default_factory=Path.cwd)
    window_backend: str = "auto"
    json_path: Path | None = None
    log: object = None


def percentiles(values, ps=(50, 90, 99)) -> dict:
    if not values:
        return {f"p{p}": None for p in ps} | {"mean": None}
    a = np.asarray(values, np.float64)
    out = {f"p{p}": round(float(np.percentile(a, p)), 3) for p in ps}
    out["mean"] = round(float(a.mean()), 3)
    return out


class _Workers:
    """N inference threads pulling frames from the capture; results go to one queue."""

    def __init__(self, predictors, capture: Capture, out: queue.Queue, stop: threading.Event):
        self.predictors = predictors
        self.capture = capture
        self.out = out
        self.stop = stop
        self.threads = [threading.Thread(target=self._run, args=(p,), name=f"edgeseg-infer-{i}", daemon=True)
                        for i, p in enumerate(predictors)]

    def start(self):
        for t in self.threads:
            t.start()

    def _put(self, item):
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self, predictor):
        try:
            while not self.stop.is_set():
                try:
                    frame = self.capture.get(timeout=0.2)
                except queue.Empty:
                    continue
                if frame is None:
                    break
                t0 = time.perf_counter()
                rgb = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB)
                convert_ms = (time.perf_counter() - t0) * 1e3
                # post-processing (argmax over the logits) runs in the main thread, so it
                # overlaps this worker's next model call instead of adding to it
                y, meta, times = predictor.timed_infer(rgb)
                times["pre_ms"] += convert_ms  # the colour conversion is pre-processing too
                self._put((frame, (y, meta), times))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._put(exc)
            return
        self._put(_END)


def default_workers(shared: bool = False) -> int:
    """Two requests when they share one compiled model (OpenVINO): one request's
    pre-processing then overlaps the other's inference at no cost in threads. Separate
    Predictors split the cores: one request on up to 2 cores (measured there, two 1-thread
    requests gave 15.5 FPS end to end against 25.1 FPS for one 2-thread request), else two."""
    if shared:
        return 2
    return 1 if (os.cpu_count() or 1) <= 2 else 2


def load_predictors(artifact, workers: int | None = None, threads: int | None = None, device: str | None = None):
    """The demo's Predictors: ``workers`` infer requests (default :func:`default_workers`).
    Where the runtime shares one compiled model between requests they are siblings on one
    model with ``threads`` threads (default: the runtime's, all cores); otherwise separate
    Predictors of ``threads`` each (default: cores / workers)."""
    from edgeseg.formats import load_predictor
    from edgeseg.formats import predictor_class

    shared = predictor_class(artifact).shares_compiled_model
    workers = max(1, int(workers or default_workers(shared)))
    if shared:
        first = load_predictor(artifact, threads=threads, device=device)
        _fuse(first)
        return [first] + [first.sibling() for _ in range(workers - 1)]
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
    predictors = [load_predictor(artifact, threads=threads, device=device) for _ in range(workers)]
    for p in predictors:
        _fuse(p)
    return predictors


def _fuse(predictor) -> None:
    # The demo only draws class ids: where the runtime can, the argmax and the input
    # normalisation run in its graph: less work in the render thread and the worker, 11x less
    # output and 4x less input to copy (tools/profile_demo_steps.py, docs/demo.md).
    predictor.fuse_argmax()
    predictor.fuse_preprocessing()


def present(picture, recorder, window) -> None:
    """One drawn picture to the recording and the window (either may be None)."""
    if recorder is not None:
        recorder.write(picture)
    if window is not None:
        window.show(picture)


def ema_fps(fps: float, dt: float) -> float:
    """The HUD's frame rate: an exponential moving average over the gaps between pictures."""
    return 1.0 / max(dt, 1e-6) if fps == 0 else 0.9 * fps + 0.1 / max(dt, 1e-6)


def run_demo(cfg: DemoConfig, predictors=None) -> dict:
    """Run the demo until the source ends, ``max_frames`` were shown, or the user quits."""
    log = cfg.log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if cfg.mode not in MODES:
        raise EdgesegError(f"--mode must be one of {', '.join(MODES)}, got '{cfg.mode}'")
    source = open_source(cfg.source)  # a missing file is an error before anything else
    recorder = Recorder(cfg.record) if cfg.record else None  # bad --record name: also before
    if predictors is None:
        from edgeseg.native_logs import captured

        with captured():  # the runtimes' native logs (OpenVINO, "Created TensorFlow Lite XNNPACK delegate")
            predictors = load_predictors(cfg.artifact, cfg.workers, cfg.threads, cfg.device)
    manifest = predictors[0].manifest
    name = f"{(manifest.get('model') or {}).get('name', '')} {manifest.get('target', '')} " \
           f"{manifest.get('precision', '')}".strip()
    renderer = Renderer(manifest["classes"], manifest["colors"], alpha=cfg.alpha, mode=cfg.mode, hud=cfg.hud,
                        model_name=name)
    drop = source.live if cfg.drop is None else bool(cfg.drop)
    capture = Capture(source, mode="latest" if drop else "all", retries=cfg.retries, backoff=cfg.backoff,
                      max_frames=None if drop else cfg.max_frames, queue_size=2 * len(predictors) + 2, log=log)
    window = open_window("edgeseg demo", cfg.window_backend) if cfg.window else None

    stop = threading.Event()
    results: queue.Queue = queue.Queue(maxsize=2 * len(predictors) + 2)
    workers = _Workers(predictors, capture, results, stop)
    stats = {"model_ms": [], "pre_ms": [], "post_ms": [], "e2e_ms": [], "render_ms": []}
    shown = 0
    skipped_stale = 0
    paused = False
    quit_reason = "end of source"
    pending: dict[int, tuple] = {}
    next_index = 0
    last_index = -1
    ended_workers = 0
    t_first = t_last = None
    fps_ema = 0.0
    screenshots: list[str] = []
    last_picture = None
    ok = False
    keep_partial_recording = False
    t_start = time.perf_counter()

    post = predictors[0].postprocess  # the same for every worker's Predictor (manifest-driven)

    def _render(it):
        nonlocal shown, t_first, t_last, fps_ema, last_index
        fr, (y, meta), tm = it
        tp = time.perf_counter()
        cls = post(y, meta)
        tm["post_ms"] = (time.perf_counter() - tp) * 1e3
        t0 = time.perf_counter()
        pic = renderer.compose(fr.image, cls, {"fps": fps_ema, "model_ms": tm["model_ms"],
                                               "e2e_ms": (t0 - fr.t_capture) * 1e3,
                                               "dropped": capture.dropped})
        present(pic, recorder, window)
        t1 = time.perf_counter()
        if t_last is not None:
            fps_ema = ema_fps(fps_ema, t1 - t_last)
        t_first = t1 if t_first is None else t_first
        t_last = t1
        last_index = fr.index
        shown += 1
        for k in ("model_ms", "pre_ms", "post_ms"):
            stats[k].append(tm[k])
        stats["e2e_ms"].append((t1 - fr.t_capture) * 1e3)
        stats["render_ms"].append((t1 - t0) * 1e3)
        return pic

    # A worker back from the runtime (which ran without the GIL) waits for the GIL; with
    # Python's default 5 ms switch interval it can wait that long behind the render thread.
    switch_interval = sys.getswitchinterval()
    capture.start()
    workers.start()
    try:
        sys.setswitchinterval(min(switch_interval, 0.0005))
        while True:
            # -- keys (also while paused)
            if window is not None:
                key = window.poll_key(1 if not paused else 30)
                if key == "q":
                    quit_reason = "quit"
                    break
                if key == " ":
                    paused = not paused
                elif key == "m":
                    renderer.cycle_mode()
                elif key == "s" and last_picture is not None:
                    path = Path(cfg.screenshot_dir) / time.strftime("edgeseg-demo-%Y%m%d-%H%M%S.png")
                    cv2.imwrite(str(path), last_picture)
                    screenshots.append(str(path))
                    log(f"screenshot: {path}")
                if paused:
                    if last_picture is not None:
                        window.show(last_picture)
                    continue
            # -- next result (watchdog: never wait forever)
            timeout = cfg.stall_timeout_s if shown else cfg.first_frame_timeout_s
            try:
                item = results.get(timeout=0.05 if window is not None else timeout)
            except queue.Empty:
                if window is not None and time.perf_counter() - (t_last or t_start) < timeout:
                    continue
                if capture.error:
                    raise capture.error
                what = "the first frame" if not shown else "a new frame"
                raise CaptureError(f"{source.describe()}: no result for {timeout:g} s while waiting for {what} "
                                   f"(source stalled?): giving up")
            if isinstance(item, BaseException):
                raise item
            if item is _END:
                ended_workers += 1
                if ended_workers == len(predictors):
                    # flush what is left in order (files), then stop
                    for idx in sorted(pending):
                        if cfg.max_frames is not None and shown >= cfg.max_frames:
                            break
                        _show = pending.pop(idx)
                        last_picture = _render(_show)
                    if capture.error:
                        raise capture.error
                    break
                continue
            frame = item[0]
            if drop:
                if frame.index < last_index:
                    skipped_stale += 1
                    continue
                ready = [item]
            else:
                pending[frame.index] = item
                ready = []
                while next_index in pending:
                    ready.append(pending.pop(next_index))
                    next_index += 1

            for it in ready:
                last_picture = _render(it)
                if cfg.max_frames is not None and shown >= cfg.max_frames:
                    break
            if cfg.max_frames is not None and shown >= cfg.max_frames:
                quit_reason = "max frames"
                break
        ok = True
    except (KeyboardInterrupt, Terminated):  # Ctrl-C or SIGTERM: a clean stop, the recording is kept
        quit_reason = "interrupted"
        ok = True
    except CaptureError:
        # A live source that went away after frames were shown: the recording so far is a
        # complete, playable file (the writer is closed properly), so it is kept and named;
        # the run still ends with the error and a non-zero exit.
        keep_partial_recording = source.live and shown > 0
        raise
    finally:
        sys.setswitchinterval(switch_interval)
        stop.set()
        capture.stop()
        if window is not None:
            window.close()
        saved = recorder.close(ok=(ok or keep_partial_recording) and shown > 0) if recorder is not None else None
        if saved is not None and not ok:
            log(f"kept the recording of the {shown} frames shown before the source failed: {saved}")
        capture.join(1.0)
        for t in workers.threads:
            t.join(2.0)
    wall = time.perf_counter() - t_start
    steady = (t_last - t_first) if (t_first is not None and t_last is not None) else 0.0
    summary = {
        "source": source.describe(),
        "artifact": str(cfg.artifact),
        "model": name,
        "stopped": quit_reason,
        "frames": shown,
        "captured": capture.captured,
        "dropped": capture.dropped,
        "skipped_stale": skipped_stale,
        "reconnects": capture.reconnects,
        "workers": len(predictors),
        "threads_per_worker": predictors[0].threads,
        "shared_compiled_model": len(predictors) > 1 and predictors[0].shares_compiled_model,
        # True where the runtime computes the argmax in its graph (load_predictors' fuse_argmax)
        "argmax_in_graph": predictors[0].output_kind == "classes" and manifest["output"].get("kind") == "logits",
        "preprocessing_in_graph": predictors[0].raw_input,
        "drop_frames": drop,
        # a rate over a handful of frames says nothing (3 frames once read "3142 FPS")
        "fps": round((shown - 1) / steady, 3) if shown >= MIN_FRAMES_FOR_FPS and steady > 0 else None,
        "wall_s": round(wall, 3),
        "latency_ms": {k.removesuffix("_ms"): percentiles(v) for k, v in stats.items()},
        "record": str(saved) if saved else None,
        "screenshots": screenshots,
    }
    if cfg.json_path:
        import json

        from edgeseg.files import atomic_write_text

        atomic_write_text(Path(cfg.json_path), json.dumps(summary, indent=2) + "\n")
    return summary


def format_summary(s: dict) -> str:
    lat = s["latency_ms"]

    def p(k):
        d = lat[k]
        return "n/a" if d["p50"] is None else f"p50 {d['p50']:.1f} / p90 {d['p90']:.1f} / p99 {d['p99']:.1f} ms"

    fps = f"n/a (under {MIN_FRAMES_FOR_FPS} frames)" if s["fps"] is None else f"{s['fps']:.2f}"
    lines = [f"demo: {s['frames']} frames from {s['source']} ({s['stopped']}), {fps} FPS, "
             f"captured {s['captured']}, dropped {s['dropped']}, {s['workers']} worker(s)"
             + (f", {s['reconnects']} reconnect(s)" if s.get("reconnects") else ""),
             f"  model      {p('model')}", f"  end-to-end {p('e2e')}",
             f"  pre {p('pre')}; post {p('post')}; render {p('render')}"]
    if s.get("record"):
        lines.append(f"  recorded {s['record']}")
    return "\n".join(lines)


__all__ = ["DemoConfig", "run_demo", "format_summary", "load_predictors", "percentiles", "present", "ema_fps"]
