"""Shared rate limiters side by side: achieved rate and peak one-second window across processes.

    python bench/limiter.py [--rates 100 1000] [--seconds 3] [--processes 4]

Compares Lifestats' SharedRateLimiter (GCRA virtual scheduling in shared memory) with pyrate-limiter's
multiprocess buckets (a sliding-window log in a Manager list, and GCRA state in a Manager list), each
acquired back to back by several processes. Prints requests/s as a share of the limit and the most
acquisitions seen in any one-second window.
"""

from __future__ import annotations

import argparse
import bisect
import multiprocessing as mp
import time
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

    def acquire(self) -> None:
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

    def acquire(self) -> None:
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


def measure(limiter: Any, rate: float, seconds: float, processes: int, ctx: Any) -> tuple[float, int]:
    queue = ctx.Queue()
    n = int(rate * seconds / processes)
    workers = [ctx.Process(target=_work, args=(limiter, n, queue)) for _ in range(processes)]
    for w in workers:
        w.start()
    stamps = sorted(t for _ in workers for t in queue.get())
    for w in workers:
        w.join()
    peak = max(bisect.bisect_left(stamps, t + 1.0) - i for i, t in enumerate(stamps))
    return len(stamps) / (stamps[-1] - stamps[0]), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 1000.0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    print(f"{'limiter':<34} {'limit/s':>8} {'achieved/s':>11} {'share':>7} {'peak 1s':>8}")
    for rate in args.rates:
        for name, make in (
            ("lifestats SharedRateLimiter", lambda r: SharedRateLimiter(r)),
            ("pyrate-limiter MultiprocessBucket", lambda r: PyrateLog(r, ctx)),
            ("pyrate-limiter GCRA, Manager store", lambda r: PyrateGcra(r, ctx)),
        ):
            achieved, peak = measure(make(rate), rate, args.seconds, args.processes, ctx)
            print(f"{name:<34} {rate:>8g} {achieved:>11.1f} {achieved / rate:>7.1%} {peak:>8}")


if __name__ == "__main__":
    main()
