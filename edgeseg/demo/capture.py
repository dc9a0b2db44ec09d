"""Frame sources for the demo and the capture thread that feeds the pipeline.

A *source* is what ``--source`` names: a camera index (``0``), a video file, a stream URL
(``rtsp://``, ``http://``...) or a folder of images. :func:`open_source` checks it and
returns a :class:`Source`; a missing file or folder is a :class:`CaptureError` at once.

:class:`Capture` reads frames in its own thread into one of two buffers:

* ``latest`` (live sources): a one-slot buffer that the reader overwrites; a frame that
  is overwritten before anybody took it is counted in ``dropped``. The pipeline always
  works on the newest frame and never builds a backlog.
* ``all`` (files and folders, the default there): a small bounded queue; the reader
  blocks when it is full, so every frame is processed, in order, and decode overlaps
  the model.

A live source that cannot be opened, or stops giving frames, is reopened with backoff
(``retries`` tries, ``backoff`` seconds apart: 0.5, 1, 2 by default); after that the
capture ends with an error that :meth:`Capture.get` raises. Reconnects are bounded too: a
stream that keeps dropping (a few frames per connection, then a stall) may reconnect
``retries`` times in a row; the count starts again only after a connection stayed up for
``healthy_after_s`` seconds, so such a stream ends with an error instead of reconnecting
forever. Reads that hang are caught
by the caller's timeout on :meth:`Capture.get` (the watchdog), never by waiting forever.
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

from edgeseg.data.images import ImageTooLarge, check_frame_size, imread
from edgeseg.errors import ConfigError, DataError, EdgesegError
from edgeseg.native_logs import verbose

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
URL_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class CaptureError(EdgesegError):
    """A source that cannot be opened or stopped giving frames."""

    exit_code = 3


@dataclass
class Frame:
    index: int            #: position in the capture order (0, 1, ...)
    image: np.ndarray     #: BGR uint8 as OpenCV decodes it
    t_capture: float      #: time.perf_counter() when the frame was read


@dataclass
class Source:
    """What ``--source`` names, checked: ``kind`` is camera, file, url or folder."""

    spec: str
    kind: str
    target: object = None           #: int for a camera, str path / URL otherwise
    files: list = field(default_factory=list)  #: the images of a folder

    @property
    def live(self) -> bool:
        return self.kind in ("camera", "url")

    def describe(self) -> str:
        return {"camera": f"camera {self.target}", "url": f"stream {self.spec}",
                "file": f"video '{self.spec}'", "folder": f"folder '{self.spec}'"}[self.kind]

    # -- opening

    def open(self, open_timeout_s: float = 5.0, read_timeout_s: float = 5.0):
        """A cv2.VideoCapture (camera, url, file) or an image iterator (folder); None when it fails."""
        if self.kind == "folder":
            return _FolderReader(self.files)
        if not verbose():  # FFmpeg's own lines ("Truncating packet...") stay off the terminal; read once
            os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "0")
        params = []
        if hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC"):
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout_s * 1000)]
        try:
            if self.kind == "camera":
                cap = cv2.VideoCapture(int(self.target), cv2.CAP_ANY, params)
            else:
                cap = cv2.VideoCapture(str(self.target), cv2.CAP_ANY, params)
        except (cv2.error, TypeError):
            cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            return None
        try:  # the size the container declares, checked before a frame is decoded
            check_frame_size(cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT),
                             self.describe())
        except ImageTooLarge as exc:
            cap.release()
            raise CaptureError(str(exc)) from exc
        return cap

    def fps(self, reader) -> float | None:
        if isinstance(reader, _FolderReader):
            return None
        f = float(reader.get(cv2.CAP_PROP_FPS) or 0.0)
        return f if 0.5 < f < 1000 else None


class _FolderReader:
    """The images of a folder, sorted, through the cv2.VideoCapture read()/release() calls."""

    def __init__(self, files):
        self.files = list(files)
        self.i = 0

    def read(self):
        while self.i < len(self.files):
            path = self.files[self.i]
            self.i += 1
            try:
                return True, imread(path, cv2.IMREAD_COLOR)
            except ImageTooLarge:
                raise  # a decompression bomb ends the capture: skipping it would hide it
            except DataError:
                print(f"warning: skipping '{path}': not an image", file=sys.stderr)
        return False, None

    def release(self):
        pass


def open_source(spec) -> Source:
    """Check ``--source`` (``0``, FILE, URL or DIR) and say what it is; CaptureError when missing."""
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if index < 0:  # OpenCV 5 segfaults on VideoCapture(-1): never hand it a negative index
            raise ConfigError(f"camera index {index} is negative: give 0 for the first camera, 1 for the next "
                              f"(`ls /dev/video*` lists them), or a video file, URL or folder")
        return Source(text, "camera", index)
    if text.lower().startswith(URL_PREFIXES):
        return Source(text, "url", text)
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise CaptureError(f"source folder '{text}' has no images ({', '.join(IMAGE_EXTS)})")
        return Source(text, "folder", str(path), files)
    if path.is_file():
        return Source(text, "file", str(path))
    if text.startswith("/dev/video"):
        raise CaptureError(f"camera '{text}' does not exist: check `ls /dev/video*` or give the index (--source 0)")
    raise CaptureError(f"source '{text}' does not exist: give a camera index (0), a video file, "
                       f"an rtsp:// URL or a folder of images")


class Capture:
    """The capture thread: reads ``source`` into a one-slot (``latest``) or bounded (``all``) buffer.

    ``get(timeout)`` returns the next :class:`Frame`, ``None`` at the end of the source,
    raises :class:`CaptureError` when the source failed for good, and ``queue.Empty``
    when no frame came within ``timeout`` (the caller's watchdog decides what that means).
    """

    def __init__(self, source: Source, *, mode: str | None = None, retries: int = 3,
                 backoff=(0.5, 1.0, 2.0), max_frames: int | None = None, queue_size: int = 4,
                 open_timeout_s: float = 5.0, read_timeout_s: float = 5.0, healthy_after_s: float = 10.0,
                 log=None):
        self.source = source
        self.mode = mode or ("latest" if source.live else "all")
        if self.mode not in ("latest", "all"):
            raise ValueError(f"capture mode must be 'latest' or 'all', got {self.mode!r}")
        self.retries = int(retries)
        self.backoff = tuple(backoff) or (0.5,)
        self.max_frames = max_frames
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.healthy_after_s = float(healthy_after_s)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.captured = 0
        self.dropped = 0
        self.reconnects = 0
        self.fps: float | None = None
        self.error: CaptureError | None = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._ended = False
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgeseg-capture", daemon=True)

    # -- control

    def start(self) -> "Capture":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        # unblock a reader waiting on a full queue
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def join(self, timeout: float = 2.0) -> None:
        self._thread.join(timeout)

    def wait_open(self, timeout: float) -> bool:
        """True once the source is open (or the capture has ended with an error)."""
        return self._opened.wait(timeout)

    # -- consumer side

    def get(self, timeout: float | None = None) -> Frame | None:
        if self.mode == "latest":
            deadline = None if timeout is None else time.monotonic() + timeout
            with self._cond:
                while self._slot is None and not self._ended:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise queue.Empty
                    self._cond.wait(left)
                if self._slot is not None:
                    frame, self._slot = self._slot, None
                    return frame
            if self.error:
                raise self.error
            return None
        item = self._queue.get(timeout=timeout)
        if isinstance(item, CaptureError):
            self._queue.put(item)  # every consumer sees the error
            raise item
        if item is None:
            self._queue.put(None)  # and the end
            return None
        return item

    # -- producer side

    def _put(self, frame: Frame) -> bool:
        if self.mode == "latest":
            with self._cond:
                if self._slot is not None:
                    self.dropped += 1
                self._slot = frame
                self._cond.notify()
            return True
        while not self._stop.is_set():
            try:
                self._queue.put(frame, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _finish(self, error: CaptureError | None = None) -> None:
        self.error = error
        self._opened.set()
        if self.mode == "latest":
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            return
        item = error if error is not None else None
        while True:
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        pass

    def _open_with_retries(self, what: str, reason: str):
        """Open the source; live sources are retried with backoff. None after the last try."""
        tries = self.retries if self.source.live else 0
        for attempt in range(tries + 1):
            if self._stop.is_set():
                return None
            reader = self.source.open(self.open_timeout_s, self.read_timeout_s)
            if reader is not None:
                return reader
            if attempt < tries:
                wait = self.backoff[min(attempt, len(self.backoff) - 1)]
                self.log(f"{self.source.describe()}: {reason}; retry {attempt + 1}/{tries} in {wait:g} s")
                if self._stop.wait(wait):
                    return None
        return None

    def _run(self) -> None:
        src = self.source
        try:
            reader = self._open_with_retries(src.describe(), "cannot be opened")
        except CaptureError as exc:  # frames over the pixel budget: no retry helps
            return self._finish(exc)
        if reader is None:
            if self._stop.is_set():
                return self._finish()
            hint = {"camera": "check that a camera is connected and the index is right (ls /dev/video*), "
                              "or give --source FILE",
                    "url": "check the URL and the network",
                    "file": "the file is not a video OpenCV can decode (try another file or re-encode it)",
                    "folder": ""}[src.kind]
            tried = f" after {self.retries + 1} tries" if src.live else ""
            return self._finish(CaptureError(f"{src.describe()} cannot be opened{tried}: {hint}"))
        self.fps = src.fps(reader)
        self._opened.set()
        index = 0
        budget, connected_at = self.retries, time.monotonic()  # reconnects left in a row
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and index >= self.max_frames:
                    break
                ok, img = reader.read()
                if not ok or img is None:
                    if not src.live:
                        break  # end of the file / folder
                    reader.release()
                    reader = None
                    if time.monotonic() - connected_at >= self.healthy_after_s:
                        budget = self.retries  # that connection was a good one: a fresh start
                    if budget <= 0:
                        return self._finish(CaptureError(
                            f"{src.describe()} keeps dropping: {self.retries} reconnects in a row, none of "
                            f"them up for {self.healthy_after_s:g} s: check the connection (--retries sets how "
                            f"many reconnects in a row are allowed)"))
                    budget -= 1
                    self.log(f"{src.describe()}: no frame (disconnected?); reconnecting "
                             f"({self.retries - budget}/{self.retries} in a row)")
                    reader = self._open_with_retries(src.describe(), "reconnect failed")
                    if reader is None:
                        if self._stop.is_set():
                            break
                        return self._finish(CaptureError(
                            f"{src.describe()} stopped giving frames and did not come back after "
                            f"{self.retries} retries: check the connection"))
                    self.reconnects += 1
                    connected_at = time.monotonic()
                    continue
                if img.ndim == 2:
                    img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
                elif img.shape[2] == 4:
                    img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
                if not self._put(Frame(index, img, time.perf_counter())):
                    break
                index += 1
                self.captured = index
        except ImageTooLarge as exc:
            return self._finish(CaptureError(str(exc)))
        except Exception as exc:  # noqa: BLE001 - a reader failure ends the capture with a message
            return self._finish(CaptureError(f"{src.describe()}: reading failed: {exc}"))
        finally:
            if reader is not None:
                reader.release()
        self._finish()


def camera_devices() -> list[str]:
    """The /dev/video* nodes on this machine (for messages)."""
    return sorted(str(p) for p in Path("/dev").glob("video*")) if os.name == "posix" else []


__all__ = ["Capture", "CaptureError", "Frame", "Source", "open_source", "camera_devices"]
