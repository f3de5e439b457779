"""A Dask preload for the test cluster's worker processes: SIGUSR1 dumps every thread's stack into the
worker's log, and the worker writes its pid where :meth:`tests.dask_cluster.DaskCluster.logs` finds it,
so that a failed cluster test shows what a silent worker was doing."""

from __future__ import annotations

import faulthandler
import os
import signal
from pathlib import Path
from typing import Any

PIDS = "TEST_CLUSTER_PIDS"


def dask_setup(worker: Any) -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    folder = os.environ.get(PIDS)
    if folder:
        (Path(folder) / f"{os.getpid()}.pid").write_text(str(worker.name))
