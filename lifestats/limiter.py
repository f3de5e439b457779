"""One request rate for the whole job, shared by every worker process.

A client needs two calls (:class:`RateLimiter`): :meth:`~RateLimiter.acquire` before each request
(retries included) and :meth:`~RateLimiter.pause` when the API answers 429, which holds back every
worker, not only the one that was told. The job's limiter (:class:`JobRateLimiter`) also says how long
the job is still held back by a ``Retry-After`` (:meth:`~JobRateLimiter.paused_for`, for the progress
line), keeps its rate a shared, changeable value (:meth:`~JobRateLimiter.set_rate`) and takes feedback
(:meth:`~JobRateLimiter.on_success`, :meth:`~JobRateLimiter.on_throttled`), so that a limit learned from
the API's answers can drive it. A cluster implementation keeps the same interface over shared state
elsewhere.

How :class:`SharedRateLimiter` schedules
----------------------------------------

Two shared times do the work. The *reservation frontier* queues workers fairly, GCRA-style: each
acquire takes the next free slot and moves the frontier one interval on, then sleeps until its slot.
The *last actual send* spaces the requests: when a worker wakes it may send only if at least one
interval has passed since the previous send really left (and no 429 pause holds), and it records its
own send there. A worker that wakes late (a busy machine, a stopped process) therefore delays the
sends after it instead of leaving in a burst with them: the previous design sent on any slot already
in the past, and with busy processes beside the job the server saw 51 requests in one second at a
limit of 50. Consecutive sends are never closer than one interval, ``SPACING_MARGIN / rate``, so no
second holds more than the limit while the requests' trip to the server varies by less than the
margin (20 ms at any rate).

A worker held back to one interval after the previous send spins the last stretch of that wait
(``SPIN_SECONDS``) instead of sleeping it: ``time.sleep`` wakes 0.1 ms late or more, and once the
schedule runs behind every send would otherwise add that lateness to the spacing.

Surviving SIGKILL
-----------------

A worker may be killed at any moment, inside the limiter included. The previous design kept its state
under a ``multiprocessing`` lock (a POSIX semaphore), which a killed holder never releases: every
other worker then waited for ever. Here the state is a few 8-byte floats in one anonymous shared
memory file (``memfd``), and the lock is a POSIX record lock (``fcntl.lockf``) on that same file,
which the kernel releases when its holder dies, however it dies. Each update is a single aligned
8-byte store, so a holder killed between two of them leaves a state that is still consistent: a
reservation made but never used is a slot left empty, a send recorded but never made is one interval
lost, never a wedge or a burst.

The options weighed (``python bench/limiter.py --locks`` measures them): a ``multiprocessing`` lock
is not released by a dead holder; ``flock`` and ``lockf`` are (0.9, 2.2 and 3.6 µs per uncontended
lock and unlock on a busy 2-core machine). ``flock`` belongs to an open file description, which a
worker would share with its parent unless it reopened the file; ``lockf`` belongs to the process, which
fits workers started by forkserver. A lock-free compare-and-swap would need a native extension (the
standard library has no atomic operations on shared memory) and still a protocol to update three values
together. Two ``lockf`` round trips per request cost microseconds, against 10 ms between requests at
100/s. Waking every worker one interval before its slot, so that whoever is ready sends first, was
tried too: no measurable gain with busy processes beside the job, and more spinning.

Test hook: the environment variable ``LIFESTATS_LIMITER_TEST_STOP=POINT:PATH``, read when the limiter
is built, makes the first process other than the builder that reaches POINT (``reserve`` or
``commit``: inside the lock, before the reservation or the send is written; ``reserved``: after
reserving, before waiting for the slot) create PATH with its pid and stop itself (SIGSTOP), so that a
test can kill or resume it at a known point. Nothing else reads it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import math
import mmap
import os
import signal
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from multiprocessing import reduction
from typing import Any, Protocol

# Requests are spaced this much wider than 1/limit: a request leaves the client a little before the
# server logs its arrival, and not always equally soon, so the margin keeps every second the server
# measures under the limit.
SPACING_MARGIN = 1.02
# The last stretch of a wait shorter than this is spun, not slept (sleep wakes late by 0.1 ms or more).
SPIN_SECONDS = 0.0005
# A request that left the client this much later than its turn (its thread descheduled on a busy machine,
# a worker's first request) moves the last send to when it left (see SharedRateLimiter.left). Any second
# holds at most the limit while no request leaves later than the margin's slack over a second (r sends
# span r * SPACING_MARGIN / r seconds: 20 ms more than one), so three quarters of it, and a thread that
# waits a few milliseconds for the GIL while its worker counts a page costs no interval.
LATE_LEAVE_SECONDS = 0.75 * (SPACING_MARGIN - 1.0)
MIN_RATE = 0.01
TEST_STOP_ENV = "LIFESTATS_LIMITER_TEST_STOP"
STOP_POINTS = ("reserve", "commit", "reserved")

# The shared state: 8-byte floats in the memfd, each written by a single store.
_NEXT, _LAST, _PAUSED, _RATE, _RECORDED, _SENT, _RETRIED = range(7)
_FIELDS = 8  # room for later fields; the send record (if any) follows


class RateLimiter(Protocol):
    """What a client needs from a limiter."""

    def acquire(self, *, retry: bool = False) -> None:
        """Block until one more request may be sent (``retry``: it repeats one that failed)."""

    def pause(self, seconds: float) -> None:
        """Send nothing, from any worker, for the next ``seconds``."""

    def left(self) -> None:
        """The request this thread was last let send has been written to its connection (called by the
        transport): the next send is spaced from then if it left late."""


class JobRateLimiter(RateLimiter, Protocol):
    """The job's limiter: also its pause for the progress line, its rate, and feedback for an adaptive limit."""

    @property
    def rate(self) -> float:
        """Requests per second now allowed, for the whole job."""
        ...

    def set_rate(self, per_second: float) -> None:
        """Change the rate for every worker, from the next request on."""

    def paused_for(self) -> float:
        """Seconds the job is still held back by a 429's ``Retry-After`` (0 when it is not)."""
        ...

    def on_success(self) -> None:
        """A request was answered (not throttled)."""

    def on_throttled(self) -> None:
        """A request was refused with 429."""


def _check_rate(per_second: float) -> float:
    rate = float(per_second)
    if not (math.isfinite(rate) and rate >= MIN_RATE):
        raise ValueError(f"a rate limit must be at least {MIN_RATE} requests per second, got {per_second!r}")
    return rate


def _anonymous_file(size: int) -> int:
    """A file with no name (gone with its last descriptor) of ``size`` zero bytes."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("lifestats-limiter", os.MFD_CLOEXEC)
    else:  # pragma: no cover - systems without memfd
        with tempfile.TemporaryFile() as file:
            fd = os.dup(file.fileno())
    os.ftruncate(fd, size)
    return fd


def _parse_stop(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    point, _, path = value.partition(":")
    if point not in STOP_POINTS or not path:
        raise ValueError(f"{TEST_STOP_ENV} must be POINT:PATH with POINT one of {', '.join(STOP_POINTS)}")
    return point, path


class SharedRateLimiter:
    """A limiter that several processes share; pass it to them as a process argument.

    ``record_sends`` keeps the times (``time.monotonic``) of the first that many sends, readable with
    :meth:`sends` from any process (tests and benchmarks check the spacing with them).
    """

    def __init__(self, per_second: float, margin: float = SPACING_MARGIN, *, record_sends: int = 0) -> None:
        rate = _check_rate(per_second)
        if margin < 1.0:
            raise ValueError(f"the spacing margin must be at least 1, got {margin}")
        self.margin = margin
        self._capacity = max(0, int(record_sends))
        self._stop = _parse_stop(os.environ.get(TEST_STOP_ENV))
        self._builder = os.getpid()
        self._size = 8 * (_FIELDS + self._capacity)
        self._fd = _anonymous_file(self._size)
        self._attach()
        self._state[_RATE] = rate

    def _attach(self) -> None:
        weakref.finalize(self, os.close, self._fd)
        self._map = mmap.mmap(self._fd, self._size)
        self._state = (ctypes.c_double * (_FIELDS + self._capacity)).from_buffer(self._map)
        # POSIX record locks belong to a process, so threads of one process take turns here first.
        self._thread_lock = threading.Lock()
        self._turns = threading.local()  # this thread's last send, as acquire recorded it

    # -- pickling: a worker gets its own descriptor of the same shared file --------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {
            "margin": self.margin,
            "capacity": self._capacity,
            "stop": self._stop,
            "builder": self._builder,
            "size": self._size,
            "fd": reduction.DupFd(self._fd),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.margin = state["margin"]
        self._capacity = state["capacity"]
        self._stop = state["stop"]
        self._builder = state["builder"]
        self._size = state["size"]
        self._fd = state["fd"].detach()
        self._attach()

    # -- the lock ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[Any]:
        """The shared state, for this process alone; the kernel releases the lock if the process dies."""
        with self._thread_lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                yield self._state
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _test_stop(self, point: str) -> None:
        """The documented test hook: the first other process to get here stops itself (see the module doc)."""
        if self._stop is None or self._stop[0] != point or os.getpid() == self._builder:
            return
        try:
            fd = os.open(self._stop[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGSTOP)

    # -- the interface ----------------------------------------------------------------------------------
    @property
    def rate(self) -> float:
        return float(self._state[_RATE])

    @property
    def interval(self) -> float:
        """Seconds between two sends at the current rate."""
        return self.margin / self._state[_RATE]

    def set_rate(self, per_second: float) -> None:
        rate = _check_rate(per_second)
        with self._locked() as state:
            state[_RATE] = rate

    def acquire(self, *, retry: bool = False) -> None:
        with self._locked() as state:
            interval = self.margin / state[_RATE]
            slot = max(state[_NEXT], time.monotonic(), state[_LAST] + interval, state[_PAUSED])
            self._test_stop("reserve")
            state[_NEXT] = slot + interval
        self._test_stop("reserved")
        spin = False
        while True:
            wait_until(slot, SPIN_SECONDS if spin else 0.0)
            with self._locked() as state:
                now = time.monotonic()
                earliest = state[_LAST] + self.margin / state[_RATE]
                paused = state[_PAUSED]
                if now >= earliest and now >= paused:
                    self._test_stop("commit")
                    state[_LAST] = now
                    self._turns.at = now
                    state[_SENT] += 1
                    if retry:
                        state[_RETRIED] += 1
                    self._record(state, now)
                    return
                if paused > now:
                    # A 429 paused the job after this slot was reserved: queue again behind the pause.
                    interval = self.margin / state[_RATE]
                    slot = max(state[_NEXT], paused, earliest)
                    state[_NEXT] = slot + interval
                else:
                    # The previous send left late (or this wake-up came early): keep the spacing from it,
                    # to the microsecond, so that a schedule running behind does not fall further behind.
                    slot = earliest
                    spin = True

    def left(self) -> None:
        """The last send is when the request left, if that was more than :data:`LATE_LEAVE_SECONDS` after its
        turn: between the turn and the first byte written, a thread may be descheduled for tens of
        milliseconds (a busy machine, a worker's first request), and a request that leaves that late would
        reach the server closer than one interval to the next one. Sooner, the margin covers it, and
        nothing is locked."""
        turn = getattr(self._turns, "at", None)
        now = time.monotonic()
        if turn is None or now - turn < LATE_LEAVE_SECONDS:
            return
        self._turns.at = None
        with self._locked() as state:
            if state[_LAST] < now:
                state[_LAST] = now

    def pause(self, seconds: float) -> None:
        with self._locked() as state:
            until = time.monotonic() + max(0.0, seconds)
            if until > state[_PAUSED]:
                state[_PAUSED] = until

    def paused_for(self) -> float:
        return max(0.0, self._state[_PAUSED] - time.monotonic())

    def on_success(self) -> None:
        """Feedback for an adaptive limit; the fixed limit needs none."""

    def on_throttled(self) -> None:
        """Feedback for an adaptive limit; the fixed limit needs none (:meth:`pause` holds the job back)."""

    # -- the send record ----------------------------------------------------------------------------------
    def _record(self, state: Any, now: float) -> None:
        count = int(state[_RECORDED])
        if count < self._capacity:
            state[_FIELDS + count] = now  # written before the count, so a kill in between loses nothing
            state[_RECORDED] = count + 1

    def sent(self) -> int:
        """How many requests every process sharing this limiter has sent through it (a process killed
        between its turn and the send itself counts one it never sent)."""
        return int(self._state[_SENT])

    def retried(self) -> int:
        """How many of those were retries (``acquire(retry=True)``), counted the same way."""
        return int(self._state[_RETRIED])

    def sends(self) -> list[float]:
        """The recorded send times (``time.monotonic``), in the order they were made."""
        with self._locked() as state:
            count = int(state[_RECORDED])
            return [float(state[_FIELDS + i]) for i in range(count)]


def wait_until(moment: float, spin: float = 0.0) -> None:
    """Sleep until ``spin`` seconds before ``moment``, then spin the rest (awake, a thread meets its moment
    where a sleep may wake late)."""
    delay = moment - time.monotonic() - spin
    if delay > 0:
        time.sleep(delay)
    while spin and time.monotonic() < moment:
        pass
