"""A Dask preload for the worker processes of ``--cluster local``: Ctrl-C is the coordinator's.

A terminal's Ctrl-C reaches every process of the job, the LocalCluster's worker processes included,
which would die of it with tracebacks while the coordinator stops them itself and writes the partial
report. Loaded by each worker process as it starts (``LocalCluster(preload=[__name__])``).
"""

from __future__ import annotations

import signal
import threading
from typing import Any


def dask_setup(worker: Any) -> None:
    if threading.current_thread() is threading.main_thread():  # only the main thread sets handlers
        signal.signal(signal.SIGINT, signal.SIG_IGN)
