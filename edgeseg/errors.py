"""Exception types. The CLI turns any EdgesegError into one line and a non-zero exit.

Messages follow one rule: say what was wrong, which file or name, and what to do.
"""


class EdgesegError(Exception):
    """Base class for every error edgeseg reports to a user."""

    exit_code = 2


class DataError(EdgesegError):
    """A dataset, image or mask that cannot be used as it is."""


class ModelError(EdgesegError):
    """Unknown model, bad model arguments, or a checkpoint that does not fit."""


class InputSizeError(ModelError):
    """An input size the model's stride does not allow."""


class ConfigError(EdgesegError):
    """A bad option value: loss spec, schedule, device, image size..."""


class CheckpointError(EdgesegError):
    """A checkpoint that is missing, corrupt, or for another model or dataset."""


class MissingDependencyError(EdgesegError):
    """An optional backend is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str | None, purpose: str = ""):
        what = f" for {purpose}" if purpose else ""
        # extra None: a core dependency, so the install itself is incomplete
        fix = (f"run `pip install 'edgeseg[{extra}]'`" if extra else
               "it is a core dependency of edgeseg: reinstall with `pip install -c constraints.txt -e .` "
               "(see the README)")
        super().__init__(f"'{module}' is needed{what} but is not installed: {fix}")
        self.module = module
        self.extra = extra


class Terminated(BaseException):
    """SIGTERM, raised in the main thread by the CLI's handler: like Ctrl-C, it unwinds through
    every ``finally`` / ``except BaseException`` cleanup (temp folders, partial files)."""


class DownloadError(EdgesegError):
    """A download that failed or whose checksum does not match."""


def require(module: str, extra: str | None, purpose: str = ""):
    """Import an optional module lazily, or raise a MissingDependencyError naming the extra
    (``extra=None`` for a core dependency imported late)."""
    import importlib
    import importlib.util

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        # A signal during a long import (openvino, torch) can surface as the package's own
        # ImportError: it is still an interruption, not a missing package.
        cause = exc.__cause__ or exc.__context__
        while cause is not None:
            if isinstance(cause, (KeyboardInterrupt, Terminated)):
                raise cause from None
            cause = cause.__cause__ or cause.__context__
        try:
            installed = importlib.util.find_spec(module.split(".")[0]) is not None
        except (ValueError, ImportError):
            installed = False
        if installed:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            target = f"'edgeseg[{extra}]'" if extra else module
            raise EdgesegError(f"'{module}' is installed but fails to import ({first}): reinstall it with "
                               f"`pip install --force-reinstall {target}`") from exc
        raise MissingDependencyError(module, extra, purpose) from exc
