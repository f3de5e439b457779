"""The program's entry point (``python main.py``, the ``lifestats`` command): Ctrl-C is answered from the
first moment, before the job's modules are imported (about half a second), with exit code 130 and one
line instead of a traceback. Once :func:`lifestats.cli.main` runs, its own handlers take over."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _while_starting(signum: int, frame: FrameType | None) -> None:
    # Leave at once rather than raise: an exception raised here lands inside whatever is being imported,
    # and a compiled extension halfway through its own initialisation aborts on it (SIGABRT, not 130).
    # Nothing exists yet that would need cleaning up: no state dir, no worker, no server.
    sys.stderr.write("interrupted while starting: nothing was crawled\n")
    sys.stderr.flush()
    os._exit(130)


def main() -> int:
    signal.signal(signal.SIGINT, _while_starting)
    signal.signal(signal.SIGTERM, _while_starting)
    from .cli import main as run

    return run()
