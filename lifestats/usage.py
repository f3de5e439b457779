"""What a process of the job spends: CPU seconds and peak resident memory, for the run figures.

Each worker meters itself and sends what it spent since its last report along with its flushes and
at the end of each task; the coordinator meters itself and adds them up, so the report's
``run.cpu_seconds`` covers the whole job, not only the process that writes the report.
"""

from __future__ import annotations

import os
import resource
import sys
import time

# ru_maxrss is in kibibytes on Linux and in bytes on macOS.
_RSS_UNIT = 1 if sys.platform == "darwin" else 1024


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds another process of this machine has spent itself (user and system, not its children),
    from ``/proc``; None where that cannot be read (not Linux, gone, not ours to read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int:
    """The highest resident set size this process reached so far, in bytes."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * _RSS_UNIT


class CpuMeter:
    """CPU time of this process (every thread of it), handed out in deltas that add up to the total."""

    def __init__(self) -> None:
        self.start = time.process_time()
        self._last = self.start

    def take(self) -> float:
        """Seconds spent since the last call (or since the meter was made)."""
        now = time.process_time()
        spent, self._last = now - self._last, now
        return spent

    def total(self) -> float:
        """Seconds spent since the meter was made."""
        return time.process_time() - self.start
