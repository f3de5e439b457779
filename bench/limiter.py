"""Shared rate limiters side by side: achieved rate and peak one-second window across processes.

    python bench/limiter.py [--rates 100 1000] [--seconds 3] [--processes 4] [--locks]

Compares Lifestats' SharedRateLimiter (reservations queued GCRA-style, each send spaced from the previous
actual one, under a kernel-released lock) with pyrate-limiter's multiprocess buckets (a sliding-window log
in a Manager list, and GCRA state in a Manager list), each acquired back to back by several processes.
Prints requests/s as a share of the limit, the most acquisitions seen in any one-second window, and the
shortest gap between two consecutive acquisitions as a share of 1/limit (stamped by each process when its
acquire returns, so a process descheduled right then can show a shorter gap than the limiter kept).

``--locks`` measures instead what one uncontended lock and unlock costs for the locks a shared limiter
could use, and one SharedRateLimiter.acquire at a rate too high to wait.
"""

from __future__ import annotations

import argparse
import bisect
import fcntl
import itertools
import multiprocessing as mp
import os
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from pyrate_limiter import Limiter, Rate
from pyrate_limiter.abstracts.algorithm import GCRA
from pyrate_limiter.buckets.mp_bucket import MultiprocessBucket
from pyrate_limiter.buckets.state_bucket import MultiprocessStateStore, StateBucket

from lifestats.limiter import SharedRateLimiter


class PyrateLog:
    def __init__(self, rate: float, ctx: Any) -> None:
        self.bucket = MultiprocessBucket([Rate(int(rate), 1000)], ctx.Manager().list(), ctx.RLock())
        self.limiter: Limiter | None = None

    def acquire(self, *, retry: bool = False) -> None:
        if self.limiter is None:
            self.limiter = Limiter(self.bucket, buffer_ms=1)
        self.limiter.try_acquire("x")

    def __getstate__(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "limiter": None}


class PyrateGcra:
    def __init__(self, rate: float, ctx: Any) -> None:
        self.store = MultiprocessStateStore(ctx.Manager().list(), ctx.RLock())
        self.rate = Rate(int(rate), 1000, burst=1)
        self.limiter: Limiter | None = None

    def acquire(self, *, retry: bool = False) -> None:
        if self.limiter is None:
            self.limiter = Limiter(StateBucket([self.rate], algorithm=GCRA(), store=self.store), buffer_ms=0)
        self.limiter.try_acquire("x")

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self.store, "rate": self.rate, "limiter": None}


def _work(limiter: Any, n: int, out: Any) -> None:
    stamps = []
    for _ in range(n):
        limiter.acquire()
        stamps.append(time.monotonic())
    out.put(stamps)


def measure(limiter: Any, rate: float, seconds: float, processes: int, ctx: Any) -> tuple[float, int, float]:
    queue = ctx.Queue()
    n = int(rate * seconds / processes)
    workers = [ctx.Process(target=_work, args=(limiter, n, queue)) for _ in range(processes)]
    for w in workers:
        w.start()
    stamps = sorted(t for _ in workers for t in queue.get())
    for w in workers:
        w.join()
    peak = max(bisect.bisect_left(stamps, t + 1.0) - i for i, t in enumerate(stamps))
    shortest = min(b - a for a, b in itertools.pairwise(stamps)) * rate
    return len(stamps) / (stamps[-1] - stamps[0]), peak, shortest


def _per_call(action: Callable[[], None], n: int = 100_000) -> float:
    """Microseconds per call of ``action``, the best of three rounds."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            action()
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def locks() -> None:
    """What one uncontended lock and unlock costs, for the locks a shared limiter could use."""
    mp_lock = mp.get_context("forkserver").Lock()
    thread_lock = threading.Lock()
    with tempfile.TemporaryFile() as file:
        fd = file.fileno()

        def with_mp() -> None:
            with mp_lock:
                pass

        def with_lockf() -> None:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            fcntl.lockf(fd, fcntl.LOCK_UN)

        def with_flock() -> None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            fcntl.flock(fd, fcntl.LOCK_UN)

        def with_thread() -> None:
            with thread_lock:
                pass

        limiter = SharedRateLimiter(1e9)
        rows = [
            ("multiprocessing.Lock (POSIX semaphore)", with_mp, "no"),
            ("fcntl.lockf (POSIX record lock)", with_lockf, "yes"),
            ("fcntl.flock", with_flock, "yes"),
            ("threading.Lock (one process only)", with_thread, "n/a"),
            ("SharedRateLimiter.acquire, never waiting", limiter.acquire, "yes"),
        ]
        print(f"pid {os.getpid()}: one uncontended lock + unlock")
        print(f"{'lock':<42} {'µs':>6}  released when its holder is killed")
        for name, action, released in rows:
            print(f"{name:<42} {_per_call(action, 20_000 if 'acquire' in name else 100_000):>6.2f}  {released}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 1000.0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--locks", action="store_true", help="measure the cost of the candidate locks instead")
    args = parser.parse_args()
    if args.locks:
        locks()
        return
    ctx = mp.get_context("spawn")
    print(f"{'limiter':<34} {'limit/s':>8} {'achieved/s':>11} {'share':>7} {'peak 1s':>8} {'shortest gap':>13}")
    for rate in args.rates:
        for name, make in (
            ("lifestats SharedRateLimiter", lambda r: SharedRateLimiter(r)),
            ("pyrate-limiter MultiprocessBucket", lambda r: PyrateLog(r, ctx)),
            ("pyrate-limiter GCRA, Manager store", lambda r: PyrateGcra(r, ctx)),
        ):
            achieved, peak, shortest = measure(make(rate), rate, args.seconds, args.processes, ctx)
            print(f"{name:<34} {rate:>8g} {achieved:>11.1f} {achieved / rate:>7.1%} {peak:>8} {shortest:>13.3f}")


if __name__ == "__main__":
    main()
