"""``edgeseg demo``: live segmentation from a camera, a video file, a stream or a folder.

Public API::

    from edgeseg.demo import DemoConfig, run_demo, resolve_artifact
    art = resolve_artifact(artifact=None, model=None, target=None)   # zoo default, cached build
    summary = run_demo(DemoConfig(artifact=art, source="clip.mp4", window=False, record="out.mp4"))

See :mod:`edgeseg.demo.pipeline` (threads and buffers), :mod:`edgeseg.demo.capture`
(sources, retries) and :mod:`edgeseg.demo.render` (picture, recording, windows).
"""

from edgeseg.demo.artifacts import cache_dir, default_target, resolve_artifact
from edgeseg.demo.capture import Capture, CaptureError, Frame, Source, open_source
from edgeseg.demo.pipeline import DemoConfig, format_summary, load_predictors, run_demo
from edgeseg.demo.render import MODES, Recorder, RecordError, Renderer, WindowError, open_window

__all__ = ["DemoConfig", "run_demo", "format_summary", "load_predictors", "resolve_artifact", "default_target",
           "cache_dir", "Capture", "CaptureError", "Frame", "Source", "open_source", "Renderer", "Recorder",
           "RecordError", "WindowError", "open_window", "MODES"]
