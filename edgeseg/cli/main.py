"""The ``edgeseg`` command: one Typer app, one sub-module per command group.

Library code raises ``EdgesegError``; ``main()`` turns it into one line on stderr and
a non-zero exit so that users never see a traceback for a mistake of input.
"""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="edgeseg",
    help="Real-time semantic segmentation from data to edge devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_commands():
    # Each module adds its commands to ``app`` (or exposes a sub-app we mount).
    from edgeseg.cli import bench as bench_cli
    from edgeseg.cli import build as build_cli
    from edgeseg.cli import compress as compress_cli
    from edgeseg.cli import data as data_cli
    from edgeseg.cli import demo as demo_cli
    from edgeseg.cli import doctor as doctor_cli
    from edgeseg.cli import fit as fit_cli
    from edgeseg.cli import models as models_cli
    from edgeseg.cli import segment as segment_cli
    from edgeseg.cli import train as train_cli
    from edgeseg.cli import zoo as zoo_cli

    app.add_typer(data_cli.app, name="data")
    app.add_typer(zoo_cli.app, name="zoo")
    models_cli.register(app)
    train_cli.register(app)
    segment_cli.register(app)
    build_cli.register(app)
    bench_cli.register(app)
    demo_cli.register(app)
    compress_cli.register(app)
    fit_cli.register(app)
    doctor_cli.register(app)


_register_commands()


@app.callback()
def _options(verbose: bool = typer.Option(False, "--verbose", help="Show third-party native logs (TFLite, "
                                                                   "MLIR, OpenVINO...), hidden by default."),
             quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
             max_image_pixels: int = typer.Option(None, "--max-image-pixels", show_default=False,
                                                  help="Largest image or video frame read, in pixels (default "
                                                       "67108864 = 8192x8192; checked before decoding)."),
             trust_model_code: bool = typer.Option(False, "--trust-model-code", help="Let checkpoints import the "
                                                   "model code they name (yours only: a stranger's could run "
                                                   "anything); without it, give --model-code.")):
    import os

    if max_image_pixels is not None:
        from edgeseg.data.images import MAX_PIXELS_ENV
        from edgeseg.errors import ConfigError

        if max_image_pixels < 1:
            raise ConfigError(f"--max-image-pixels must be at least 1, got {max_image_pixels}")
        os.environ[MAX_PIXELS_ENV] = str(max_image_pixels)
    if trust_model_code:
        from edgeseg.models import own

        own.trust_all()

    if verbose:
        from edgeseg.native_logs import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"
    if quiet:
        from edgeseg.progress import QUIET_ENV

        os.environ[QUIET_ENV] = "1"


INTERRUPTED = "interrupted (Ctrl-C): stopped, temporary files removed"


def describe_os_error(exc: OSError) -> str:
    """One line for a file-system fault: which path, what the system said, what to do."""
    import errno

    where = f" '{exc.filename}'" if exc.filename else ""
    what = exc.strerror or str(exc)
    space = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
    advice = {
        **dict.fromkeys(space, "free some space or write elsewhere"),
        errno.EISDIR: "give a file name, not a folder",
        errno.EEXIST: "a file is in the way where a folder is needed: give another path",
        errno.ENOTDIR: "a file is in the way where a folder is needed: give another path",
        errno.EACCES: "choose a place you may write to", errno.EPERM: "choose a place you may write to",
        errno.EROFS: "the place is read-only: choose another",
        errno.ENOENT: "check the path",
    }.get(exc.errno, "check the path and try another")
    verb = "cannot write" if exc.errno in (*space, errno.EIO) else "cannot use"
    return f"{verb}{where}: {what}: {advice}"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (usage errors are reported by Typer itself)."""
    import signal
    import threading

    from edgeseg.errors import EdgesegError, Terminated

    def on_sigterm(signum, frame):
        raise Terminated()

    from edgeseg.formats import onnx_model
    from edgeseg.models import own

    own.reset_trust()  # each command starts with no code allowed, and no ONNX facts
    onnx_model.set_options()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        app(args=argv)  # standalone: always ends in SystemExit
    except EdgesegError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except OSError as exc:  # a path that cannot be written or read, a full disk: one line, not a traceback
        typer.echo(f"error: {describe_os_error(exc)}", err=True)
        return 2
    except Terminated:
        typer.echo("terminated (SIGTERM): stopped, temporary files removed", err=True)
        return 143
    except KeyboardInterrupt:
        typer.echo(INTERRUPTED, err=True)
        return 130
    except SystemExit as exc:
        if exc.code == 130:  # Typer turns Ctrl-C into a silent Exit(130)
            typer.echo(INTERRUPTED, err=True)
            return 130
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        typer.echo(str(exc.code), err=True)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
