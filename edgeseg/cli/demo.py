"""``edgeseg demo``: live segmentation (camera, video file, stream or image folder) with an
overlay, a legend and a HUD; headless with ``--no-window --record OUT.mp4``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


class Mode(str, Enum):
    overlay = "overlay"
    mask = "mask"
    side = "side"


class WindowBackend(str, Enum):
    auto = "auto"
    opencv = "opencv"
    tk = "tk"


def demo_cmd(
    artifact: Annotated[Optional[Path], typer.Option(help="Artifact folder from `edgeseg build`.")] = None,
    model: Annotated[Optional[str], typer.Option(
        help="Checkpoint or zoo name, built once into ~/.cache/edgeseg/artifacts (default: the zoo's best).")] = None,
    target: Annotated[Optional[str], typer.Option(
        help="Target for --model (default: openvino-cpu when OpenVINO is installed, else onnxruntime-cpu).")] = None,
    precision: Annotated[Optional[str], typer.Option(help="Precision for --model (default: the target's).")] = None,
    source: Annotated[str, typer.Option(help="Camera index, video file, rtsp:// URL or image folder.")] = "0",
    window: Annotated[bool, typer.Option("--window/--no-window", help="Show a window (keys: q quit, space pause, "
                                         "m overlay/mask/side, s screenshot).")] = True,
    record: Annotated[Optional[Path], typer.Option(help="Record the picture: .mp4 (mp4v) or .avi/.mkv (FFV1, lossless).")] = None,
    max_frames: Annotated[Optional[int], typer.Option(min=1, help="Stop after this many frames.")] = None,
    alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Overlay opacity of the class colours.")] = 0.5,
    mode: Annotated[Mode, typer.Option(help="overlay | mask | side (frame and overlay side by side).")] = Mode.overlay,
    hud: Annotated[bool, typer.Option("--hud/--no-hud", help="Draw the HUD (FPS, latency) and the legend.")] = True,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Parallel inference requests (default: 2 on one OpenVINO compiled model; other runtimes: "
                                                                   "1 on up to 2 cores, else 2).")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="Inference threads (OpenVINO: of the one shared model; else per worker, default cores / workers).")] = None,
    device: Annotated[Optional[str], typer.Option(help="Runtime device (default: the artifact's).")] = None,
    drop: Annotated[Optional[bool], typer.Option("--drop/--no-drop", help="Keep only the newest frame "
                                                 "(default: on for cameras/streams, off for files and folders).")] = None,
    retries: Annotated[int, typer.Option(min=0, help="Reopen tries for a live source (backoff 0.5, 1, 2 s).")] = 3,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the summary as JSON.")] = None,
    screenshot_dir: Annotated[Path, typer.Option(help="Folder for screenshots (key s).")] = Path("."),
    window_backend: Annotated[WindowBackend, typer.Option(help="auto | opencv (GUI build) | tk.")] = WindowBackend.auto,
    remote: Annotated[Optional[str], typer.Option(
        help="Run on this device over ssh (a Host of ~/.ssh/config or user@host[:port]) against --source there "
             "(its camera index or a file on the device); the overlay comes back here.")] = None,
    remote_python: Annotated[str, typer.Option(help="Python on the device (with numpy, OpenCV and the runtime).")] = "python3",
    ssh_config: Annotated[Optional[Path], typer.Option(help="ssh config file (default: ssh's own, ~/.ssh/config).")] = None,
    remote_timeout: Annotated[float, typer.Option(min=1.0, help="Seconds the copy to the device may take (the "
                                                                "stream stops after 30 s without a frame).")] = 600.0,
):
    """Run a segmentation artifact live on a camera, video, stream or folder."""
    from edgeseg.demo import DemoConfig, format_summary, open_source, resolve_artifact, run_demo

    log = lambda msg: typer.echo(msg, err=True)  # noqa: E731
    if remote:
        from edgeseg.demo.remote import run_remote_demo

        art = resolve_artifact(artifact, model, target, precision, log=log)
        summary = run_remote_demo(art, remote, source=source, record=record, window=window, max_frames=max_frames,
                                  alpha=alpha, mode=mode.value, hud=hud, threads=threads, python=remote_python,
                                  ssh_config=ssh_config, timeout=remote_timeout, json_path=json_out,
                                  window_backend=window_backend.value, log=log)
        typer.echo(format_summary(summary))
        typer.echo(f"  on {remote}: {(summary['remote'].get('machine') or {}).get('cpu', '?')}; its folder "
                   f"{'was removed' if summary['remote']['removed'] else 'could NOT be removed'}")
        if summary["frames"] == 0:
            typer.echo("error: no frame was processed", err=True)
            raise typer.Exit(3)
        return
    open_source(source)  # a missing file: one line before any model is built
    if not window and record is None and json_out is None:
        typer.echo("note: --no-window without --record or --json shows nothing; the summary is printed at the end",
                   err=True)
    art = resolve_artifact(artifact, model, target, precision, log=log)
    cfg = DemoConfig(artifact=art, source=source, window=window, record=record, max_frames=max_frames,
                     alpha=alpha, mode=mode.value, hud=hud, workers=workers, threads=threads,
                     device=device,
                     drop=drop, retries=retries, json_path=json_out, screenshot_dir=screenshot_dir,
                     window_backend=window_backend.value, log=log)
    summary = run_demo(cfg)
    typer.echo(format_summary(summary))
    if summary["frames"] == 0:
        typer.echo("error: no frame was processed", err=True)
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
