"""Progress bars for the steps that take more than a few seconds (eval, predict, the parity
run of build, bench's accuracy pass, model listing): a rich bar on stderr when stderr is a
terminal, nothing otherwise (pipes, logs, CI) or with ``edgeseg --quiet`` / ``EDGESEG_QUIET=1``.
Never on stdout, which may carry data (``--json``, piped tables)."""

from __future__ import annotations

import os

QUIET_ENV = "EDGESEG_QUIET"


def enabled() -> bool:
    from edgeseg.native_logs import user_stderr

    return user_stderr().isatty() and os.environ.get(QUIET_ENV, "") in ("", "0")


def track(iterable, description: str, total: int | None = None):
    """``iterable``, with a transient progress bar while it is consumed (where :func:`enabled`)."""
    if not enabled():
        yield from iterable
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgeseg.native_logs import user_stderr

    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(file=user_stderr()), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in iterable:
            yield item
            bar.advance(task)


class Tracked:
    """A list that shows a progress bar each time it is iterated: calibration images for a
    third-party loop (``nncf.quantize``) whose own bar is captured with its logs."""

    def __init__(self, items, description: str):
        self.items, self.description = list(items), description

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(track(self.items, self.description))


__all__ = ["track", "enabled", "Tracked", "QUIET_ENV"]
