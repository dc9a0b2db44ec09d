"""Keep third-party native logs (absl / TFLite / MLIR from litert-torch, torchao's optional
kernels, oneDNN, OpenVINO, NNCF) off the user's terminal.

These libraries write to file descriptor 2 from C++, below Python's ``sys.stderr``, so they
can only be caught at the descriptor: :func:`captured` points fd 2 at a temporary file for
the duration of a block and puts it back after. edgeseg's own messages are printed outside
such blocks. ``EDGESEG_VERBOSE=1`` (or ``edgeseg --verbose ...``) leaves fd 2 alone.
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


@contextlib.contextmanager
def captured():
    """Run the block with fd 2 going to a temporary file (unless verbose); yields a dict whose
    ``text`` holds what was written there once the block is done."""
    log = {"text": ""}
    if verbose():
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
        sys.stderr.flush()
        os.dup2(tmp.fileno(), 2)
        _terminal = outer or os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
        try:
            yield log
        finally:
            sys.stderr.flush()
            if outer is None:
                _terminal.close()
            _terminal = outer
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            log["text"] = tmp.read().decode("utf-8", "replace")


__all__ = ["captured", "verbose", "user_stderr", "VERBOSE_ENV"]
