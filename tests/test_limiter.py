"""The shared limiter: spacing and 429 pauses hold across processes (lower bounds only, never durations)."""

from __future__ import annotations

import multiprocessing as mp
import time

from lifestats.limiter import SPACING_MARGIN, SharedRateLimiter


def _pause(limiter: SharedRateLimiter, seconds: float, out: mp.Queue) -> None:
    start = time.monotonic()
    limiter.pause(seconds)
    out.put(start + seconds)


def _acquire(limiter: SharedRateLimiter, n: int) -> None:
    for _ in range(n):
        limiter.acquire()


def test_a_pause_from_one_process_holds_back_the_others() -> None:
    limiter = SharedRateLimiter(1000)
    ctx = mp.get_context("forkserver")
    out = ctx.Queue()
    child = ctx.Process(target=_pause, args=(limiter, 0.3, out))
    child.start()
    until = out.get(timeout=60)
    child.join(timeout=60)
    limiter.acquire()
    assert time.monotonic() >= until


def test_requests_are_spaced_across_processes() -> None:
    rate = 50.0
    limiter = SharedRateLimiter(rate)
    ctx = mp.get_context("forkserver")
    before = time.monotonic()
    children = [ctx.Process(target=_acquire, args=(limiter, 20)) for _ in range(3)]
    for child in children:
        child.start()
    _acquire(limiter, 20)
    for child in children:
        child.join(timeout=60)
    # 80 slots, one interval apart, the first no earlier than `before`: the last began 79 intervals later.
    assert time.monotonic() - before >= 79 * SPACING_MARGIN / rate
