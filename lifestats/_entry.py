"""The program's entry point (``python main.py``, the ``lifestats`` command): Ctrl-C is heard from the
first moment, before the job's modules are imported (about half a second). It is recorded, and answered
once :func:`lifestats.cli.main` runs, as any interrupt before the first request is: a partial report of
what the checkpoint holds, exit code 130. A second one while the modules load quits at once."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

_caught: list[int] = []  # the signals received while the modules load


def _while_starting(signum: int, frame: FrameType | None) -> None:
    # Record rather than raise: an exception raised here lands inside whatever is being imported, and a
    # compiled extension halfway through its own initialisation aborts on it (SIGABRT, not 130).
    _caught.append(signum)
    if len(_caught) > 1:  # asked twice: leave now (nothing exists yet that needs cleaning up)
        sys.stderr.write("interrupted while starting: nothing was crawled\n")
        sys.stderr.flush()
        os._exit(130)


def main() -> int:
    signal.signal(signal.SIGINT, _while_starting)
    signal.signal(signal.SIGTERM, _while_starting)
    signal.signal(signal.SIGHUP, _while_starting)
    from .cli import main as run

    return run(pending=_caught)
