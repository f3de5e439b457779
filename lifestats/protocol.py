"""The messages between the coordinator and the workers, in one place: what a task is, what a worker
sends back while it runs one, and what an executor reports about its workers.

Plain frozen dataclasses of JSON-like values and bytes, so that both the local process pool (pipes,
pickled) and a Dask cluster (its own serialisation) carry them unchanged, and a worker that imports them
imports nothing of the checkpoint (no DuckDB).

- :class:`Task`: a slice to crawl from a position (coordinator -> worker).
- :class:`Flush`: a slice's progress and the statistics counted since its last flush (worker ->
  coordinator, every few pages); :class:`Split`: the answer to a proposal to hand over half of what is
  left of a slice.
- Events an executor reports: :class:`Flushed`, :class:`Finished`, :class:`Failed`, :class:`Lost`,
  :class:`Progress` (and a :class:`Split`), together :data:`Event`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .plan import Slice


@dataclass(frozen=True)
class Task:
    slice: Slice
    attempt: int
    position: Any  # where the crawl goes on (a JSON value); for offsets by id, the offset to request next
    high_water: int | None
    seq: int  # the last committed flush of the slice
    # Positional and sequential styles: the ids the slice's committed flushes took (their ``taken``), so
    # that a new attempt still knows them (lifestats.seen).
    taken: tuple[bytes, ...] = ()
    # Crawls by id, the open last slice (no api.last_id): the end of the data when the run found its id
    # range (nothing existed at or above it). Past it, the crawl ends on the first page that is not full: an
    # API that keeps adding records would otherwise keep a one-shot job chasing them for ever.
    horizon: int | None = None
    # Crawls by id: the lowest slice of an id range that discovery found (no record lies below it).
    lowest: bool = False
    # Crawls by id: the highest id discovery saw on the API's pages (records exist up to it), if any.
    known: int | None = None


@dataclass(frozen=True)
class Flush:
    """A worker's report for one slice: progress and the statistics counted since its last flush."""

    slice: int
    attempt: int
    seq: int  # this flush's number in the slice's history; it continues seq - 1
    position: Any  # where the slice's crawl goes on (a JSON value, e.g. the next offset); None when done
    high_water: int | None  # the highest id counted in the slice so far, when the API's ids are ordered
    pages: int
    requests: int
    retries: int
    partial: bytes
    # Positional and sequential styles: the ids this flush's pages took (lifestats.seen.encode_ids),
    # committed with it, and handed to the slice's next attempt.
    taken: bytes = b""
    # What the worker process spent since its last report (run figures only; not checkpointed).
    cpu_seconds: float = 0.0
    peak_rss_bytes: int = 0


@dataclass(frozen=True)
class Split:
    """A worker's answer to a proposal to hand over the second half of what is left of its slice: the end
    it chose (the rest becomes a new slice), or a refusal."""

    slice: int
    attempt: int
    new_end: int
    accepted: bool


@dataclass(frozen=True)
class Flushed:
    flush: Flush


@dataclass(frozen=True)
class Finished:
    """A worker ended its task: the slice's last flush said it is done, or the worker was asked to stop
    (its last flush then holds where the slice goes on)."""

    slice: int
    attempt: int
    cpu_seconds: float = 0.0  # what the worker spent since its last report (see lifestats.usage)
    peak_rss_bytes: int = 0


@dataclass(frozen=True)
class Failed:
    """A task failed for good (or, with ``slice`` -1, the workers themselves cannot run)."""

    slice: int
    attempt: int
    message: str
    exit_code: int
    resumable: bool = True  # whether running the same command again can help
    status: int | None = None  # the HTTP status of an API failure
    cpu_seconds: float = 0.0  # what the worker spent since its last report (see lifestats.usage)
    peak_rss_bytes: int = 0
    fresh: bool = False  # a resume would ask for the same refused page again (see errors.ApiError)


@dataclass(frozen=True)
class Progress:
    """A heartbeat: the worker's requests are moving (one was sent or ended since the last one)."""


@dataclass(frozen=True)
class Lost:
    """A worker died (killed, crashed) while it held this task."""

    task: Task
    exitcode: int | None


Event = Flushed | Finished | Failed | Lost | Split | Progress


class StopRequested(Exception):
    """Raised between two pages in a worker asked to stop (Ctrl-C): it flushes what it counted and ends
    its task."""


STOP: Final = ("stop",)  # the message that asks a worker to stop its task (see StopRequested)
