"""Drawing the demo picture, recording it, and showing it in a window.

* :class:`Renderer` -- class map + frame -> the picture: ``overlay`` (frame blended with
  the class colours by ``alpha``: ``(1 - alpha) * frame + alpha * colour``, rounded),
  ``mask`` (the class colours alone) or ``side`` (frame | overlay side by side), a legend
  of the classes and their colours, and a HUD with FPS and latencies.
* :class:`Recorder` -- writes the pictures to a video file through a temporary file in
  the same folder, renamed to the final name only by :meth:`Recorder.close` with
  ``ok=True``; a failed or interrupted run leaves no partial recording behind. The codec
  comes from the extension: ``.mp4``/``.mov``/``.m4v`` mp4v (lossy), ``.avi``/``.mkv``
  FFV1 (lossless: the recorded colours are exact).
* Windows -- :func:`open_window` returns the OpenCV HighGUI window when this OpenCV has a
  GUI (``opencv-python``), else a Tk window (``tkinter``, part of CPython; on Debian/Ubuntu
  ``apt-get install python3-tk``), else a :class:`WindowError` naming what to install.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from edgeseg.errors import EdgesegError

MODES = ("overlay", "mask", "side")
FOURCC_BY_EXT = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "FFV1", ".mkv": "FFV1"}


class WindowError(EdgesegError):
    """No way to show a window here (no display, or no GUI toolkit)."""


class RecordError(EdgesegError):
    """The recording cannot be written."""


def palette_bgr(colors) -> np.ndarray:
    """256 x 3 BGR lookup table: class id -> colour (ids without a colour are black)."""
    lut = np.zeros((256, 3), np.uint8)
    rgb = np.asarray(colors, np.uint8).reshape(-1, 3)
    lut[: len(rgb)] = rgb[:, ::-1]
    return lut


def present_classes(class_map: np.ndarray) -> np.ndarray:
    """Ids of the classes in a uint8 class map (cv2.calcHist: faster than np.bincount)."""
    if class_map.dtype != np.uint8:
        return np.flatnonzero(np.bincount(class_map.ravel(), minlength=256))
    return np.flatnonzero(cv2.calcHist([class_map], [0], None, [256], [0, 256]).ravel())


class Renderer:
    """Composes the picture for one frame; ``mode``, ``alpha`` and ``hud`` may change between frames."""

    def __init__(self, classes, colors, *, alpha: float = 0.5, mode: str = "overlay", hud: bool = True,
                 legend: bool = True, model_name: str = ""):
        if mode not in MODES:
            raise EdgesegError(f"display mode must be one of {', '.join(MODES)}, got '{mode}'")
        if not 0.0 <= float(alpha) <= 1.0:
            raise EdgesegError(f"--alpha must be between 0 and 1, got {alpha}")
        self.classes = list(classes)
        self.colors = [tuple(int(v) for v in c) for c in colors]
        self.lut = palette_bgr(self.colors)
        self._colormap = np.ascontiguousarray(self.lut.reshape(256, 1, 3))
        self.alpha = float(alpha)
        self.mode = mode
        self.hud = hud
        self.legend = legend
        self.model_name = model_name

    def cycle_mode(self) -> str:
        self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]
        return self.mode

    def colorize(self, class_map: np.ndarray) -> np.ndarray:
        if class_map.dtype == np.uint8:
            # a user colour map: one OpenCV call, several times faster than self.lut[class_map]
            # (tools/profile_demo_steps.py)
            return cv2.applyColorMap(class_map, self._colormap)
        return self.lut[class_map]

    def blend(self, frame_bgr: np.ndarray, color_bgr: np.ndarray) -> np.ndarray:
        a = self.alpha
        if a >= 1.0:
            return color_bgr.copy()
        if a <= 0.0:
            return frame_bgr.copy()
        return cv2.addWeighted(frame_bgr, 1.0 - a, color_bgr, a, 0.0)

    def compose(self, frame_bgr: np.ndarray, class_map: np.ndarray, stats: dict | None = None,
                present: bool = True) -> np.ndarray:
        color = self.colorize(class_map)
        if self.mode == "mask":
            out = color
        elif self.mode == "overlay":
            out = self.blend(frame_bgr, color)
        else:
            out = np.concatenate([frame_bgr, self.blend(frame_bgr, color)], axis=1)
        out = np.ascontiguousarray(out)
        if self.legend and self.hud:
            ids = present_classes(class_map) if present else None
            self.draw_legend(out, ids)
        if self.hud and stats:
            self.draw_hud(out, stats)
        return out

    # -- decorations

    @staticmethod
    def _font_scale(h: int) -> tuple[float, int, int]:
        scale = max(0.3, min(0.6, h / 720.0))
        line = max(10, int(28 * scale))
        return scale, line, 1

    def draw_legend(self, img: np.ndarray, present_ids=None) -> None:
        """Class swatches and names at the right edge; classes present in the frame are bright."""
        h, w = img.shape[:2]
        scale, line, thick = self._font_scale(h)
        rows = self.classes[: max(1, (h - 4) // line)]
        tw = max(cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] for name in rows)
        box_w = min(w // 2, tw + line + 10)
        x0 = w - box_w
        roi = img[0:len(rows) * line + 4, x0:w]
        cv2.convertScaleAbs(roi, roi, 0.4)  # darken behind the legend
        present = set(int(i) for i in present_ids) if present_ids is not None else None
        for i, name in enumerate(rows):
            y = 2 + i * line
            b, g, r = (int(v) for v in self.lut[i])
            cv2.rectangle(img, (x0 + 3, y + 2), (x0 + line - 3, y + line - 3), (b, g, r), -1)
            on = present is None or i in present
            cv2.putText(img, name, (x0 + line + 2, y + line - 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                        (255, 255, 255) if on else (140, 140, 140), thick, cv2.LINE_AA)

    def draw_hud(self, img: np.ndarray, stats: dict) -> None:
        h, w = img.shape[:2]
        scale, line, thick = self._font_scale(h)
        lines = [f"{stats.get('fps', 0.0):5.1f} FPS  {self.mode}  a={self.alpha:.2f}",
                 f"model {stats.get('model_ms', 0.0):5.1f} ms  e2e {stats.get('e2e_ms', 0.0):5.1f} ms"]
        if stats.get("dropped"):
            lines.append(f"dropped {stats['dropped']}")
        if self.model_name:
            lines.append(self.model_name)
        if stats.get("paused"):
            lines.append("PAUSED")
        tw = max(cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] for s in lines)
        bw, bh = min(w, tw + 8), min(h, len(lines) * line + 4)
        roi = img[h - bh:h, 0:bw]
        cv2.convertScaleAbs(roi, roi, 0.4)
        for i, s in enumerate(lines):
            cv2.putText(img, s, (4, h - bh + (i + 1) * line - 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                        (255, 255, 255), thick, cv2.LINE_AA)


class Recorder:
    """A video file written through ``.<name>.<pid>.partial<ext>`` and renamed on success."""

    def __init__(self, path, fps: float = 30.0):
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in FOURCC_BY_EXT:
            raise RecordError(f"--record '{path}': use a .mp4 (mp4v), .avi or .mkv (FFV1, lossless) file name")
        if not self.path.parent.is_dir():
            raise RecordError(f"--record '{path}': folder '{self.path.parent}' does not exist")
        self.fourcc = FOURCC_BY_EXT[ext]
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.partial{ext}")
        self.writer = None
        self.size = None
        self.frames = 0

    def write(self, img_bgr: np.ndarray) -> None:
        if self.writer is None:
            h, w = img_bgr.shape[:2]
            self.size = (w, h)
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self.writer.isOpened():
                self.writer = None
                self._remove_tmp()
                raise RecordError(f"cannot write '{self.path}' with codec {self.fourcc}: this OpenCV has no "
                                  f"encoder for it; try a .avi or .mp4 name")
        if (img_bgr.shape[1], img_bgr.shape[0]) != self.size:  # the display mode changed the width
            img_bgr = cv2.resize(img_bgr, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(img_bgr)
        self.frames += 1

    def _remove_tmp(self):
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass

    def close(self, ok: bool = True) -> Path | None:
        """Finish the file: renamed to ``path`` when ``ok`` and frames were written, else removed."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if ok and self.frames and self.tmp.is_file():
            os.replace(self.tmp, self.path)
            return self.path
        self._remove_tmp()
        return None


# -- windows


class CvWindow:
    """OpenCV HighGUI (needs an OpenCV built with a GUI: the ``opencv-python`` wheel)."""

    backend = "opencv"

    def __init__(self, title: str):
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE)
        self.closed = False

    def show(self, img_bgr: np.ndarray) -> None:
        cv2.imshow(self.title, img_bgr)

    def poll_key(self, wait_ms: int = 1) -> str | None:
        k = cv2.waitKey(max(1, wait_ms)) & 0xFF
        try:
            if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                self.closed = True
                return "q"
        except cv2.error:
            pass
        if k == 255:
            return None
        return " " if k == 32 else ("q" if k == 27 else chr(k))

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass


class TkWindow:
    """A Tk window showing each picture as a PPM PhotoImage (no Pillow needed)."""

    backend = "tk"

    def __init__(self, title: str):
        import tkinter as tk

        self.tk = tk
        try:
            self.root = tk.Tk()
        except tk.TclError as exc:
            raise WindowError(f"cannot open a window ({exc}): set DISPLAY, or run with --no-window "
                              f"--record OUT.mp4") from exc
        self.root.title(title)
        self.label = tk.Label(self.root, borderwidth=0, highlightthickness=0)
        self.label.pack()
        self.keys: list[str] = []
        self.closed = False
        self.photo = None
        self.root.bind("<Key>", self._on_key)
        self.root.protocol("WM_DELETE_WINDOW", self._on_close)

    def _on_key(self, event):
        if event.keysym == "space":
            self.keys.append(" ")
        elif event.keysym == "Escape":
            self.keys.append("q")
        elif event.char:
            self.keys.append(event.char)

    def _on_close(self):
        self.closed = True
        self.keys.append("q")

    def show(self, img_bgr: np.ndarray) -> None:
        if self.closed:
            return
        h, w = img_bgr.shape[:2]
        rgb = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2RGB)
        ppm = b"P6 %d %d 255\n" % (w, h) + rgb.tobytes()
        photo = self.tk.PhotoImage(width=w, height=h, data=ppm, format="PPM")
        self.label.configure(image=photo)
        self.photo = photo  # keep a reference: Tk does not
        self.root.update()

    def poll_key(self, wait_ms: int = 1) -> str | None:
        if not self.closed:
            try:
                self.root.update()
            except self.tk.TclError:
                self.closed = True
                return "q"
        if not self.keys and wait_ms > 1:
            time.sleep(wait_ms / 1000.0)
        return self.keys.pop(0) if self.keys else None

    def close(self) -> None:
        try:
            self.root.destroy()
        except Exception:  # noqa: BLE001 - already gone
            pass


def cv2_has_gui() -> bool:
    info = cv2.getBuildInformation()
    for line in info.splitlines():
        if line.strip().startswith("GUI:"):
            return "NONE" not in line.upper()
    return False


def open_window(title: str = "edgeseg demo", backend: str = "auto"):
    """The first window backend that works here: ``opencv`` (GUI build), then ``tk``."""
    if os.name == "posix" and sys.platform != "darwin" and not os.environ.get("DISPLAY") \
            and not os.environ.get("WAYLAND_DISPLAY"):
        raise WindowError("no display (DISPLAY is not set): run with --no-window --record OUT.mp4, "
                          "or start one (e.g. `Xvfb :99 &` and DISPLAY=:99)")
    errors = []
    if backend in ("auto", "opencv"):
        if cv2_has_gui():
            try:
                return CvWindow(title)
            except cv2.error as exc:
                errors.append(f"opencv: {exc}")
        else:
            errors.append("opencv: this OpenCV has no GUI (opencv-python-headless)")
    if backend in ("auto", "tk"):
        try:
            import tkinter  # noqa: F401
        except ImportError:
            errors.append("tk: tkinter is not installed")
        else:
            return TkWindow(title)
    raise WindowError("no window backend here (" + "; ".join(errors) + "): install tkinter "
                      "(`apt-get install python3-tk`) or an OpenCV with a GUI (`pip install opencv-python` "
                      "in place of opencv-python-headless), or run with --no-window --record OUT.mp4")


__all__ = ["Renderer", "Recorder", "MODES", "WindowError", "RecordError", "open_window", "palette_bgr",
           "cv2_has_gui", "CvWindow", "TkWindow"]
