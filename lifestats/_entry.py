"""The program's entry point (``python main.py``, the ``lifestats`` command): Ctrl-C is answered from the
first moment, before the job's modules are imported (about half a second), with exit code 130 and one
line instead of a traceback. Once :func:`lifestats.cli.main` runs, its own handlers take over."""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _while_starting(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write("interrupted while starting: nothing was crawled\n")
    raise SystemExit(130)


def main() -> int:
    signal.signal(signal.SIGINT, _while_starting)
    signal.signal(signal.SIGTERM, _while_starting)
    from .cli import main as run

    return run()
