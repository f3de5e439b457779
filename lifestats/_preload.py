"""Imported by the forkserver that starts the workers of an exact run, so that every worker starts warm.

Beyond importing the workers' code, it makes pyarrow build what it builds on first use: a first
conversion of Python lists to Arrow columns and a first hash group-by (together about 75 ms of CPU on
the development machine, see ``bench/cpu.py``). Done here, that is paid once by the server and shared
by every worker it forks, instead of by each worker on its first page and first flush, while the
others wait on the same two cores.
"""

from __future__ import annotations

import numpy as np

from . import executor as _executor  # noqa: F401  (the workers' code, imported once)
from .facts import encode_facts, facts_of, summed
from .statistics import Columns


def _warm() -> None:
    columns = Columns(
        np.array([1, 2], dtype=np.int64),
        ["a", 3],
        ["v", None],
        np.array([1, 2], dtype=np.int64),
        np.array([0, 0], dtype=np.int64),
    )
    encode_facts(summed(facts_of(columns)))


_warm()
