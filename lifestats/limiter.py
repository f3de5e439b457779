"""One request rate for the whole job, shared by every worker process.

The interface is two calls: :meth:`RateLimiter.acquire` before each request (retries included) and
:meth:`RateLimiter.pause` when the API answers 429, which holds back every worker, not only the one
that was told. :class:`SharedRateLimiter` implements it for the local process pool with
pyrate-limiter's multiprocess bucket; a cluster implementation plugs a Redis or SQLite bucket into the
same interface.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import time
from typing import Any, Protocol

from pyrate_limiter import Limiter, Rate
from pyrate_limiter.buckets.mp_bucket import MultiprocessBucket

# A request leaves the client a little before the server logs its arrival, and not always equally
# soon: measuring windows slightly longer than a second keeps every server-side second under the limit.
WINDOW_MARGIN = 1.02


class RateLimiter(Protocol):
    def acquire(self) -> None:
        """Block until one more request may be sent."""

    def pause(self, seconds: float) -> None:
        """Send nothing, from any worker, for the next ``seconds``."""


def rates_for(per_second: float, margin: float = WINDOW_MARGIN) -> list[Rate]:
    """pyrate-limiter rates for ``per_second`` requests per second.

    A sliding window of (a bit over) one second that admits the limit, and one of a tenth of that
    which admits a tenth, so that requests spread over the second instead of leaving in one burst.
    """
    if per_second >= 1:
        limit = math.floor(per_second)
        window_ms = math.ceil(1000 * margin * limit / per_second)
        rates = [Rate(limit, window_ms)]
        if limit >= 20:
            rates.insert(0, Rate(math.ceil(limit / 10), math.ceil(window_ms / 10)))
        return rates
    return [Rate(1, math.ceil(1000 * margin / per_second))]


class SharedRateLimiter:
    """A limiter that several processes share; pass it to them as a process argument."""

    def __init__(self, per_second: float, context: Any = None) -> None:
        ctx = context or mp.get_context()
        self.per_second = per_second
        self._bucket = MultiprocessBucket.init(rates_for(per_second))
        self._paused_until = ctx.Value("d", 0.0)
        self._limiter: Limiter | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_limiter"] = None
        return state

    def _get(self) -> Limiter:
        if self._limiter is None:
            self._limiter = Limiter(self._bucket, buffer_ms=1)
        return self._limiter

    def acquire(self) -> None:
        limiter = self._get()
        while True:
            self._wait_pause()
            limiter.try_acquire("api")
            if time.monotonic() >= self._paused_until.value:
                return
            # A pause began while this request waited for its turn: honour it, then queue again.

    def _wait_pause(self) -> None:
        while (remaining := self._paused_until.value - time.monotonic()) > 0:
            time.sleep(remaining)

    def pause(self, seconds: float) -> None:
        until = time.monotonic() + max(0.0, seconds)
        with self._paused_until.get_lock():
            if until > self._paused_until.value:
                self._paused_until.value = until


class NoLimit:
    """For tests of code paths where the rate is not the point."""

    def acquire(self) -> None:
        return None

    def pause(self, seconds: float) -> None:
        return None
