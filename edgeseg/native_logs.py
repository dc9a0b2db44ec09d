"""Keep third-party native logs (absl / TFLite / MLIR from litert-torch, torchao's optional
kernels, oneDNN, OpenVINO, NNCF) off the user's terminal.

These libraries write to file descriptor 2 from C++, below Python's ``sys.stderr``, so they
can only be caught at the descriptor: :func:`captured` points fd 2 at a temporary file for
the duration of a block and puts it back after. Some write to stdout instead (NNCF's
"Statistics collection" / "Fast Bias correction" bars and its INFO log lines), where they
would mix with data a command prints (tables, JSON): fd 1 goes to the same place as fd 2
for the block. edgeseg's own messages are printed outside such blocks.
``EDGESEG_VERBOSE=1`` (or ``edgeseg --verbose ...``) leaves fd 2 alone, and points fd 1 at
it: the logs show on stderr, never on stdout.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

VERBOSE_ENV = "EDGESEG_VERBOSE"


#: while a block is captured: a stream on the real terminal (fd 2 as it was), for edgeseg's own
#: progress bars
_terminal = None


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def user_stderr():
    """Where edgeseg's own stderr output goes: the real stderr, also inside :func:`captured`."""
    return _terminal if _terminal is not None else sys.stderr


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # closed or replaced streams
            pass


@contextlib.contextmanager
def _stdout_to_stderr():
    """fd 1 (and Python's sys.stdout) onto whatever fd 2 is for the block."""
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1: nothing reaches stdout anyway
        yield
        return
    _flush()
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Python-level writers that look up sys.stdout
            yield
    finally:
        _flush()  # what was buffered inside goes where fd 1 pointed inside
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def captured():
    """Run the block with fd 2, and fd 1 with it, going to a temporary file (unless verbose:
    then fd 1 goes to the real stderr); yields a dict whose ``text`` holds what was written
    there once the block is done."""
    log = {"text": ""}
    if verbose():
        with _stdout_to_stderr():
            yield log
        return
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (a daemon): nothing to capture
        yield log
        return
    global _terminal
    outer = _terminal
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        _flush()
        os.dup2(tmp.fileno(), 2)
        _terminal = outer or os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
        try:
            with _stdout_to_stderr():
                yield log
        finally:
            _flush()
            if outer is None:
                _terminal.close()
            _terminal = outer
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            log["text"] = tmp.read().decode("utf-8", "replace")


__all__ = ["captured", "verbose", "user_stderr", "VERBOSE_ENV"]
