"""Holding SIGINT, SIGTERM and SIGHUP back while something must not be cut in half.

A signal handler that raises (Ctrl-C's KeyboardInterrupt) can fire inside any Python callback, and
DuckDB calls back into Python while it scans an Arrow table: an interrupt landing there surfaces as a
DuckDB error from inside the statement, or from the cleanup after it, instead of as the interrupt it is.
So a checkpoint transaction runs with these signals *held*: recorded, and delivered again the moment the
transaction is over (committed or rolled back), through whatever handler was installed before.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Final

SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: the terminal closed


@contextlib.contextmanager
def held(*, redeliver: bool = True) -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM/SIGHUP during the body instead of acting on them; yields the list they are
    recorded in (a body that waits may stop waiting once one came).

    With ``redeliver`` the first one caught is raised again once the body has ended normally, so the
    previous handler answers it right after; without, they are dropped (a run already stopping). Outside
    the main thread, where Python delivers no signals, this does nothing.
    """
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def hold(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in SIGNALS}
    try:
        yield caught
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if redeliver and caught:
        signal.raise_signal(caught[0])
